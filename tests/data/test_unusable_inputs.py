"""Files that cannot be read as bars exit 2 with a one-line reason, and nothing is stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.conftest import market_file
from tradeloop.cli.main import app

runner = CliRunner()

BAD_FILES = {
    "empty.csv": (b"", "empty file"),
    "header_only_1h.csv": (b"date,open,high,low,close,volume\n", "header but no bars"),
    "wrong_columns.csv": (b"name,age,city\nann,31,oslo\nbob,42,rome\n", "no OHLCV columns"),
    "garbage.bin": (os.urandom(256) + b"\x00\x01\x02", "binary data"),
    "bad_times_1h.csv": (
        b"date,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,10\nlast week,1,2,0.5,1.5,10\n",
        "unknown timestamp format",
    ),
    "no_volume_1h.csv": (b"date,open,high,low,close\n2024-01-01 00:00,1,2,0.5,1.5\n", "no volume column"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unusable_file_exits_2_with_reason_and_stores_nothing(name, tmp_path) -> None:
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    home = tmp_path / "home"
    result = runner.invoke(app, ["--home", str(home), "data", "import", str(path)])
    assert result.exit_code == 2, result.output
    assert reason in result.output
    assert str(path) in result.output
    assert not (home / "data").exists(), "an unusable file must leave no trace"


def test_all_rows_invalid_exits_2(tmp_path) -> None:
    path = tmp_path / "XYZ_1h.csv"
    path.write_text(
        "date,open,high,low,close,volume\n2024-01-01 00:00,-1,2,0.5,1.5,10\n2024-01-01 01:00,,2,0.5,1.5,10\n"
    )
    result = runner.invoke(app, ["--home", str(tmp_path / "home"), "data", "import", str(path)])
    assert result.exit_code == 2
    assert "no valid bars" in result.output


def test_one_good_file_among_bad_ones_exits_0_and_names_the_bad_one(tmp_path) -> None:
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    good = market_file("MSFT_1d.csv")
    result = runner.invoke(
        app, ["--home", str(tmp_path / "home"), "--json", "data", "import", str(bad), str(good)]
    )
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["errors"] == [{"file": str(bad), "error": "empty file: no bars"}]
    assert payload["reports"][0]["stored"] == 1260


def test_validate_stores_nothing(tmp_path) -> None:
    home = tmp_path / "home"
    result = runner.invoke(
        app, ["--home", str(home), "--json", "data", "validate", str(market_file("GOOG_1d.csv"))]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reports"][0]["rows_read"] == 2148
    assert not (home / "data" / "bars").exists()


def test_installed_entry_point_runs_as_a_process(tmp_path) -> None:
    """The console script works outside the test runner (what `make demo` calls)."""
    home = tmp_path / "home"
    cmd = [
        sys.executable,
        "-m",
        "tradeloop.cli.main",
        "--home",
        str(home),
        "--json",
        "data",
        "import",
        str(market_file("AAPL_1d.csv")),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reports"][0]["stored"] == 1260
    listed = subprocess.run(
        [*cmd[:6], "data", "list"], capture_output=True, text=True, check=False, timeout=120
    )
    assert json.loads(listed.stdout) == [
        {
            "series": "AAPL:1d",
            "rows": 1260,
            "first": "2012-12-06T00:00:00+00:00",
            "last": "2017-12-06T00:00:00+00:00",
        }
    ]
