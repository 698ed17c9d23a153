"""``tradeloop demo``: run the whole loop on the embedded defaults (what ``make demo`` calls)."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeloop.cli.output import Output, fail_on_errors

__all__ = ["demo"]


def demo(
    ctx: typer.Context,
    fast: Annotated[
        bool, typer.Option("--fast", envvar="DEMO_FAST", help="Fewer bars and calls, the same stages (CI).")
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete this demo home first and start over.")
    ] = False,
    http_port: Annotated[
        int, typer.Option("--http-port", envvar="DEMO_HTTP_PORT", min=1, max=65535, help="Server REST port.")
    ] = 18080,
    grpc_port: Annotated[
        int, typer.Option("--grpc-port", envvar="DEMO_GRPC_PORT", min=1, max=65535, help="Server gRPC port.")
    ] = 18081,
) -> None:
    """Import → features → train → serve → stream → monitor → retrain → report, resuming after a crash."""
    from tradeloop.demo import DemoOptions, reset_home, run_demo

    out: Output = ctx.obj
    options = DemoOptions(
        fast=fast, http_port=http_port, grpc_port=grpc_port, latency_calls=100 if fast else 300
    )
    with fail_on_errors(out):
        if fresh:
            reset_home(out.settings)
        try:
            stages = run_demo(out.settings, options, out.console)
        except KeyboardInterrupt:
            out.error("interrupted: the server is stopped; run the demo again to continue where it stopped")
            raise typer.Exit(130) from None
    if out.json:
        out.emit(stages)
