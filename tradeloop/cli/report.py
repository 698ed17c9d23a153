"""``tradeloop report``: build the whole-loop HTML report from what the home holds."""

from __future__ import annotations

import typer

from tradeloop.cli.output import Output, fail_on_errors

__all__ = ["report"]


def report(ctx: typer.Context) -> None:
    """Write HOME/report/index.html (data quality, training, serving, drift, promotions)."""
    from tradeloop.report import build_report

    out: Output = ctx.obj
    with fail_on_errors(out):
        path = build_report(out.settings)
    out.emit({"path": str(path)}, lines=[f"report: {path}"])
