"""What every demo stage works with: the home, the plan, the console, and the real CLI.

Stages call ``tradeloop`` as a user would, in a child process with the demo home, so what the
demo shows is what the commands print; ``run`` raises :class:`DemoStageFailed` (with the command
and its exit code) when a command ends with a code the stage does not expect.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console

from tradeloop.config import Settings
from tradeloop.demo.checkpoint import Checkpoint
from tradeloop.demo.data import Plan
from tradeloop.errors import TradeloopError

if TYPE_CHECKING:
    from tradeloop.client import PredictClient
    from tradeloop.demo.server import DemoServer

__all__ = ["DemoContext", "DemoOptions", "DemoStageFailed"]


class DemoStageFailed(TradeloopError):
    """A command the demo ran ended with an exit code its stage does not accept."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    fast: bool = False
    http_port: int = 18080
    grpc_port: int = 18081
    latency_calls: int = 300  # calls per protocol when measuring serving latency


@dataclass
class DemoContext:
    settings: Settings
    options: DemoOptions
    plan: Plan
    checkpoint: Checkpoint
    console: Console
    server: DemoServer | None = None
    client: PredictClient | None = None
    env: dict[str, str] = field(default_factory=dict)

    def run(
        self, *args: str, ok: tuple[int, ...] = (0,), capture: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``tradeloop --home HOME *args`` in a child process; output shown unless ``capture``."""
        command = [sys.executable, "-m", "tradeloop.cli.main", "--home", str(self.settings.home), *args]
        shown = "tradeloop " + " ".join(args)
        if not capture:
            self.console.print(f"[dim]$ {shown}[/]", highlight=False)
        result = subprocess.run(
            command,
            env=os.environ | self.env,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            check=False,
        )
        if result.returncode not in ok:
            if capture and result.stdout:
                self.console.print(result.stdout, highlight=False, markup=False)
            raise DemoStageFailed(f"`{shown}` exited with {result.returncode}")
        return result
