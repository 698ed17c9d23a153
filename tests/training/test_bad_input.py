"""Bad input exits with a clear message and code 2 before Ray starts (the real CLI, a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import market_file

CLI = [sys.executable, "-m", "tradeloop.cli.main"]


def _train(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--home", str(home), "train", "--preset", "fast", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _import(home: Path, path: Path, *args: str) -> None:
    done = subprocess.run(
        [*CLI, "--home", str(home), "data", "import", str(path), *args], capture_output=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def eurusd_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("bad") / "home"
    _import(home, market_file("EURUSD_1h.csv"), "--symbol", "EURUSD")
    return home


def _assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Started a local Ray instance" not in done.stderr
    for word in words:
        assert word in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--symbols", "NOPE"), ("symbols", "NOPE")),
        (("--timeframes", "7m"), ("timeframes", "7m")),
        (("--timeframes", "1d"), ("no stored series has timeframe 1d",)),
    ],
)
def test_unknown_symbols_or_timeframes_exit_before_ray(eurusd_home, args, words):
    _assert_refused(_train(eurusd_home, *args), *words)


def test_too_little_data_for_one_window_exits_before_ray(tmp_path):
    short = tmp_path / "EURUSD_1h.csv"
    pd.read_csv(market_file("EURUSD_1h.csv")).iloc[:100].to_csv(short, index=False)
    _import(tmp_path / "home", short, "--symbol", "EURUSD")
    _assert_refused(_train(tmp_path / "home"), "EURUSD:1h has 100 bars", "needs at least")


def test_a_group_too_short_for_its_own_time_plan_exits_before_ray(tmp_path):
    # GOOG's daily bars (2004-2013) and EURUSD's (2017-2018) never overlap; that alone trains now
    # (each market group is cut inside its own period). 260 GOOG bars, though, leave the equity
    # group 108 samples, too few for a CNN fit, a validation and an XGBoost stage of 20 rows each.
    home = tmp_path / "home"
    _import(home, market_file("EURUSD_1h.csv"), "--symbol", "EURUSD")
    short = tmp_path / "GOOG_1d.csv"
    pd.read_csv(market_file("GOOG_1d.csv"), index_col=0).iloc[-260:].to_csv(short)
    _import(home, short, "--symbol", "GOOG")
    _assert_refused(_train(home), "split:", "cnn group 'equity' has 108 samples", "needs at least 20 rows")
