"""Shared fixtures: a fresh tradeloop home per test, and the real market data the tests read.

Where the market files come from, first match wins:

1. ``TRADELOOP_MARKET_DATA`` or ``../shared/data/market`` (the full collection, crypto included);
2. ``tests/data/market/`` (AAPL/MSFT/AMZN daily bars, MIT, vendored with their provenance);
3. the installed ``backtesting`` package (``GOOG_1d.csv`` and ``EURUSD_1h.csv`` are its own
   ``GOOG.csv`` and ``EURUSD.csv``, byte for byte).

So a fresh clone runs the core suite anywhere. The crypto files are not redistributable; tests
that need them are the *extended* suite: skipped with the missing file named, and required under
``CI=true`` (where a missing file fails the test instead).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import backtesting
import pytest

from tradeloop.config import Settings

REPO = Path(__file__).resolve().parents[1]
MARKET = Path(os.environ.get("TRADELOOP_MARKET_DATA", REPO.parent / "shared" / "data" / "market"))
VENDORED = REPO / "tests" / "data" / "market"
PACKAGED = {
    "GOOG_1d.csv": Path(backtesting.__file__).parent / "test" / "GOOG.csv",
    "EURUSD_1h.csv": Path(backtesting.__file__).parent / "test" / "EURUSD.csv",
}
# Every file of the full collection (../shared/data/market/README.md describes each).
COLLECTION = (
    "AAPL_1d.csv",
    "AMZN_1d.csv",
    "BNBUSDT_1h.csv",
    "BTCUSDT_1h.csv",
    "BTCUSDT_1m.csv",
    "ETHUSDT_1h.csv",
    "EURUSD_1h.csv",
    "GOOG_1d.csv",
    "MSFT_1d.csv",
    "SOLUSDT_1h.csv",
)


def require(condition: bool, why: str) -> None:
    """Skip when a prerequisite is missing, but fail under CI=true (CI must have everything)."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"missing under CI: {why}")
    pytest.skip(why)


def _named_copy(name: str, source: Path) -> Path:
    """A byte-identical copy of a package file under its collection name (``GOOG_1d.csv``), so
    tests that read symbol and timeframe from the file name see the same file either way."""
    folder = Path(tempfile.gettempdir()) / f"tradeloop-market-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    target = folder / name
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        partial = folder / f".{name}.{os.getpid()}"
        shutil.copyfile(source, partial)
        partial.replace(target)
    return target


def find_market_file(name: str) -> Path | None:
    """Where ``name`` can be read here, or None (see the module docstring for the order)."""
    for candidate in (MARKET / name, VENDORED / name):
        if candidate.is_file():
            return candidate
    packaged = PACKAGED.get(name)
    return _named_copy(name, packaged) if packaged is not None and packaged.is_file() else None


def available_market_files() -> list[str]:
    """The collection's files this machine has (all of them under CI)."""
    return [name for name in COLLECTION if find_market_file(name) is not None]


def market_file(name: str) -> Path:
    """A real market file; skips (fails under CI) naming the file when it is not here."""
    path = find_market_file(name)
    require(
        path is not None,
        f"extended suite: {name} is not redistributable and not in {MARKET}; "
        "set TRADELOOP_MARKET_DATA to a folder holding it",
    )
    assert path is not None
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(tmp_path / "home")


@pytest.fixture(scope="session")
def market() -> Path:
    require(MARKET.is_dir(), f"extended suite: the full market collection is not at {MARKET}")
    return MARKET
