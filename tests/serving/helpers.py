"""Helpers for the serving tests (KServe and Ray Serve alike): ports, server processes, registry edits.

* :func:`free_ports` — distinct loopback ports that were free a moment ago.
* :class:`ServerProcess` — a server started as a subprocess in its own process group, waited on over
  HTTP, stopped with SIGTERM (then SIGKILL of its group if it hangs), with its output in a log file.
* :func:`serve_command` — the ``tradeloop serve`` command line for a home and ports.
* :func:`register_copy` / :func:`register_corrupted` — a new registered version of an existing bundle,
  intact or with a model file altered in the artifact store so its sha256 no longer matches.
* :func:`wait_for`, :func:`metric_value`, :func:`read_prediction_log`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import httpx

from tradeloop.config import Settings

__all__ = [
    "REPO",
    "ServerProcess",
    "free_ports",
    "metric_value",
    "read_prediction_log",
    "register_copy",
    "register_corrupted",
    "serve_command",
    "wait_for",
]

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_ports(n: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports the OS calls free (all held open while choosing, so never the same twice)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(check: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f} s")
        time.sleep(interval)


def serve_command(
    home: Path,
    *,
    engine: str,
    http_port: int,
    grpc_port: int,
    mlflow_uri: str,
    options: Sequence[str] = (),
) -> list[str]:
    """``python -m tradeloop.cli.main --home H serve --engine E ...`` for a subprocess."""
    return [
        sys.executable,
        "-m",
        "tradeloop.cli.main",
        "--home",
        str(home),
        "serve",
        "--engine",
        engine,
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--mlflow-uri",
        mlflow_uri,
        *options,
    ]


@dataclass
class ServerProcess:
    """A server subprocess in its own process group; ``url`` is its REST base address."""

    command: list[str]
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    _log: Any = field(repr=False, default=None)

    @classmethod
    def start(
        cls, command: Sequence[str], *, url: str, log_path: Path, env: dict[str, str | None] | None = None
    ) -> ServerProcess:
        """Start ``command`` from the repository root; ``env`` adds variables (None removes one)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        merged = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
        log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        process = subprocess.Popen(
            list(command),
            cwd=REPO,
            env=merged,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() can end worker processes it spawned
        )
        return cls(list(command), url.rstrip("/"), log_path, process, log)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_http(self, path: str, *, status: int = 200, timeout: float = 180.0) -> None:
        """Poll ``GET url+path`` until it answers ``status``; fails early if the process exits."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode} before {path} answered {status}:\n"
                    f"{self.log_tail()}"
                )
            try:
                response = httpx.get(self.url + path, timeout=2.0)
                if response.status_code == status:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise TimeoutError(
            f"{self.url}{path} did not answer {status} in {timeout:.0f} s ({last}):\n{self.log_tail()}"
        )

    def terminate(self) -> None:
        """Send SIGTERM to the server process (not its group: the server stops its own workers)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, wait; on a hang SIGKILL the whole group. Returns the exit code."""
        self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._reap_group()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode

    def _reap_group(self) -> None:
        """Kill whatever is left in the server's own process group (orphaned workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


# -- the registry -------------------------------------------------------------------------------------
def register_copy(settings: Settings, mlflow_uri: str, bundle_dir: Path, *, promote: bool = True) -> str:
    """Register ``bundle_dir`` again as a new version (promoted to champion by hand); its number."""
    from tradeloop.registry import Registry

    registry = Registry(settings, mlflow_uri)
    version = registry.register(bundle_dir, params={"preset": "test-copy"}, metrics={}).version
    if promote:
        registry.promote(version, reason="serving test: new good version", manual=True)
    return version


def register_corrupted(settings: Settings, mlflow_uri: str, bundle_dir: Path, *, promote: bool = True) -> str:
    """Register ``bundle_dir`` as a new version, then alter one of its model files in the artifact
    store so its sha256 no longer matches the manifest; promote it if asked. Its version number."""
    from tradeloop.registry import Registry

    registry = Registry(settings, mlflow_uri)
    version = registry.register(bundle_dir, params={"preset": "test-corrupt"}, metrics={}).version
    stored = _artifact_dir(registry.get(version).source)
    target = sorted(p for p in stored.rglob("*") if p.is_file() and p.suffix in {".onnx", ".ubj", ".json"})
    model_file = next(p for p in target if p.name != "bundle.json")
    with open(model_file, "ab") as f:
        f.write(b"\0corrupted by the serving tests")
    if promote:
        registry.promote(version, reason="serving test: corrupted version", manual=True)
    return version


def _artifact_dir(source: str) -> Path:
    parsed = urlparse(source)
    if parsed.scheme not in {"file", ""}:
        raise ValueError(f"only local artifact stores can be corrupted here, not {source}")
    path = Path(unquote(parsed.path))
    if not path.is_dir():
        raise FileNotFoundError(f"artifact directory {path} of {source} is missing")
    return path


# -- reading what servers wrote ------------------------------------------------------------------------
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name{labels}`` in Prometheus text ``text`` (None when absent)."""
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match["value"])
    return None


def read_prediction_log(home: Path) -> Any:
    """Every row of the prediction log under ``HOME/predictions`` as a pandas DataFrame."""
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted((home / "predictions").rglob("part-*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
