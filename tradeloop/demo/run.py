"""Run the demo's stages in order, skipping the finished ones, with the server up while needed.

The prediction server is started before the first unfinished stage that calls it and stopped,
with SIGTERM, after the last one, also when a stage fails or the user presses Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from rich.console import Console

from tradeloop.config import Settings
from tradeloop.demo.checkpoint import Checkpoint
from tradeloop.demo.context import DemoContext, DemoOptions
from tradeloop.demo.data import plan_for
from tradeloop.demo.stages import STAGES
from tradeloop.errors import InvalidInput

__all__ = ["reset_home", "run_demo"]


def reset_home(settings: Settings) -> None:
    """Delete a demo home, refusing any folder that is not one (or is not empty)."""
    home = settings.home
    if not home.exists():
        return
    if not (settings.demo_dir / "stages.json").is_file() and any(home.iterdir()):
        raise InvalidInput("--fresh", f"{home} is not a demo home: refusing to delete it")
    shutil.rmtree(home)


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> dict[str, Any]:
    """Run every unfinished stage; returns each stage's summary (what ``stages.json`` holds)."""
    from tradeloop.client import PredictClient
    from tradeloop.demo.server import DemoServer

    mode = "fast" if options.fast else "full"
    checkpoint = Checkpoint(settings.demo_dir / "stages.json", mode)
    ctx = DemoContext(settings, options, plan_for(options.fast), checkpoint, console)
    ctx.env = {"GITHUB_REPOSITORY": _github_repository(), "TRADELOOP_HOME": str(settings.home)}
    last_served = max(i for i, (*_, serves) in enumerate(STAGES) if serves)
    server = DemoServer(settings, options.http_port, options.grpc_port)
    started = time.monotonic()
    try:
        for number, (key, title, stage, serves) in enumerate(STAGES, start=1):
            header = f"[bold]{number}/{len(STAGES)} {title}[/]"
            if checkpoint.done(key) and key != "report":
                console.rule(f"{header} [dim](done earlier: skipped)[/]")
                continue
            console.rule(header)
            if serves and ctx.server is None:
                if server.stop_orphan():
                    console.print("stopped a server an earlier, interrupted demo left running")
                console.print(f"starting the prediction server (log: {server.log_file})")
                ctx.server = server  # before start(): an interrupt while it starts still stops it
                server.start()
                ctx.client = PredictClient(server.url, server.grpc_url)
                console.print(f"ready: REST {server.url}, gRPC {server.grpc_url}")
            t0 = time.monotonic()
            checkpoint.record(key, stage(ctx) | {"seconds": round(time.monotonic() - t0, 1)})
            if ctx.server is not None and number - 1 >= last_served:
                _stop(ctx, console)
    finally:
        _stop(ctx, console)
    console.rule(f"[bold green]demo finished in {time.monotonic() - started:.0f} s[/]")
    return checkpoint.stages


def _stop(ctx: DemoContext, console: Console) -> None:
    if ctx.client is not None:
        ctx.client.close()
        ctx.client = None
    if ctx.server is not None:
        server, ctx.server = ctx.server, None
        code = server.stop()
        console.print(f"prediction server stopped (SIGTERM, exit {code}); its prediction log is flushed")


def _github_repository() -> str:
    return os.environ.get("GITHUB_REPOSITORY") or "example/tradeloop"
