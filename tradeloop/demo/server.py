"""The demo's prediction server: ``tradeloop serve`` in a child process, started and stopped cleanly.

The child runs in its own session, so a Ctrl-C in the terminal reaches only the demo, which then
stops the server with SIGTERM (it drains in-flight requests and flushes its prediction log)
instead of leaving both to race. Its pid is kept in ``HOME/demo/server.pid``: a demo that
crashed leaves the file behind, and the next run stops that orphan before it takes the ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tradeloop.config import Settings
from tradeloop.errors import ModelNotReady, TradeloopError

__all__ = ["DemoServer"]

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(pid: int) -> bool:
    """Only a process whose command line is ``… tradeloop … serve`` is ours to stop."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust the pid file
    return any(b"tradeloop" in part for part in cmdline) and b"serve" in cmdline


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


class DemoServer:
    """A KServe predictor on loopback for the demo home; use as a context manager."""

    def __init__(self, settings: Settings, http_port: int, grpc_port: int, poll_s: float = 1.0) -> None:
        self.settings = settings
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.poll_s = poll_s
        self.pid_file = settings.demo_dir / "server.pid"
        self.log_file = settings.demo_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop_orphan(self) -> int | None:
        """Stop a server an earlier, crashed demo left running; returns its pid if there was one."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        self.pid_file.unlink(missing_ok=True)
        if pid == os.getpid() or not _alive(pid) or not _is_our_server(pid):
            return None
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, STOP_TIMEOUT_S):
            os.kill(pid, signal.SIGKILL)
        return pid

    def start(self) -> None:
        """Start the server and wait until it is ready (a champion is loaded, the store answers)."""
        from tradeloop.client import PredictClient

        for name, port in (("DEMO_HTTP_PORT", self.http_port), ("DEMO_GRPC_PORT", self.grpc_port)):
            if not _port_free(port):
                raise TradeloopError(
                    f"port {port} is in use: stop what holds it or set {name} to a free port"
                )
        self.settings.demo_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "tradeloop.cli.main",
            "--home",
            str(self.settings.home),
            "serve",
            "--engine",
            "kserve",
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            # The demo replays 2017-18 bars: their age against today's clock means nothing.
            "--max-feature-age",
            "0",
            "--poll-interval",
            str(self.poll_s),
        ]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(self.process.pid))
        deadline = time.monotonic() + READY_TIMEOUT_S
        with PredictClient(self.url, self.grpc_url) as client:
            while not client.ready():
                if self.process.poll() is not None:
                    raise ModelNotReady(
                        f"the server exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise ModelNotReady(
                        f"the server was not ready within {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
                    )
                time.sleep(0.3)

    def stop(self) -> int | None:
        """SIGTERM, wait for the drain and log flush, SIGKILL only past the timeout; the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.pid_file.unlink(missing_ok=True)
        return process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def __enter__(self) -> DemoServer:
        self.stop_orphan()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
