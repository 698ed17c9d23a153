"""Feature-store fixtures: real Redis and PostgreSQL servers on free loopback ports, real data homes.

Each server runs from its binary in its own tmp directory and is stopped at the end of the
module. With ``CI=true`` a missing binary fails the test instead of skipping it (``require``).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import market_file, require
from tradeloop.bars.importer import import_file
from tradeloop.bars.loaders import load_bars
from tradeloop.config import Settings
from tradeloop.features.offline import build_series
from tradeloop.features.recent import sync_windows

SYMBOL, TIMEFRAME = "EURUSD", "1h"  # the backtesting package's hourly bars: runs anywhere
SERIES = f"{SYMBOL}:{TIMEFRAME}"
HELD_BACK = 40  # last real bars kept out of the store, to be ingested live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """(process, URL) of a throwaway redis-server: no persistence, ``workdir``, loopback only."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    require(os.access(binary, os.X_OK), "redis-server binary not found")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc, "redis-server")
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        proc.send_signal(signal.SIGCONT)  # a test may have stopped it
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server shared by a module's tests."""
    with redis_server(tmp_path_factory.mktemp("redis")) as (_, url):
        yield url


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port, trust auth on loopback.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user and
    its tmp directory is handed to that user.
    """
    bindir = _pg_bin()
    require(bindir is not None, "PostgreSQL server binaries (initdb, pg_ctl) not found")
    assert bindir is not None
    # Not under pytest's basetemp: that is 0700 root-only, and the server user must reach its dir.
    root = Path(tempfile.mkdtemp(prefix="tradeloop-pg-"))
    data, port = root / "data", free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        require(shutil.which("runuser") is not None, "runuser needed to run postgres as non-root")
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "feast"], **run)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "30"]
    subprocess.run([*ctl, "-o", opts, "start"], **run)
    try:
        yield f"postgresql://feast@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def held_back_bars() -> pd.DataFrame:
    """The last HELD_BACK bars of the real series, as ingest input rows."""
    tail = load_bars(market_file(f"{SYMBOL}_{TIMEFRAME}.csv")).frame.iloc[-HELD_BACK:]
    return pd.DataFrame(
        {
            "ts": tail["ts"].map(lambda t: t.isoformat()),
            "symbol": SYMBOL,
            "timeframe": TIMEFRAME,
            **{k: tail[k].astype(float) for k in ("open", "high", "low", "close", "volume")},
        }
    ).reset_index(drop=True)


def make_home(root: Path) -> Settings:
    """A home with the real series minus its last HELD_BACK bars, imported and featurised."""
    settings = Settings.load(root / "home")
    header, *rows = market_file(f"{SYMBOL}_{TIMEFRAME}.csv").read_text().splitlines()
    cut = root / f"{SYMBOL}_{TIMEFRAME}.csv"
    cut.write_text("\n".join([header, *rows[:-HELD_BACK]]) + "\n")  # the source layout, cut by line
    import_file(cut, settings, symbol=SYMBOL, timeframe=TIMEFRAME)
    build_series(settings, SYMBOL, TIMEFRAME)
    sync_windows(settings)
    return settings


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_home(tmp_path_factory.mktemp("fs"))
