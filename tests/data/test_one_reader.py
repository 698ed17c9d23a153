"""``tradeloop ingest FILE`` reads bar files with the importer's reader: every layout that
``data import`` accepts lands through ingest too (the bars a user's export holds, not a second,
narrower parser). Data: the backtesting package's EURUSD hourly bars (shipped on PyPI)."""

from __future__ import annotations

import json
from pathlib import Path

import backtesting
import pandas as pd
import pytest
from typer.testing import CliRunner

from tradeloop.bars.store import BarStore
from tradeloop.cli.main import app
from tradeloop.config import Settings

EURUSD = Path(backtesting.__file__).parent / "test" / "EURUSD.csv"
FIRST = 600  # bars imported before anything is ingested


def _cli(home: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["--home", str(home), "--json", *args])
    assert result.exit_code == 0, result.output[-3000:]
    return json.loads(result.stdout) if result.stdout.strip() else {}


@pytest.fixture(scope="module")
def lines() -> tuple[str, list[str]]:
    header, *rows = EURUSD.read_text().splitlines()
    return header, rows


@pytest.fixture
def home(tmp_path: Path, lines: tuple[str, list[str]]) -> Path:
    header, rows = lines
    first = tmp_path / "EURUSD_1h.csv"
    first.write_text("\n".join([header, *rows[:FIRST]]) + "\n")
    home = tmp_path / "home"
    _cli(home, "data", "import", str(first))
    _cli(home, "features", "build")
    _cli(home, "features", "apply")
    return home


def test_a_file_in_the_packages_layout_named_symbol_tf_lands_every_bar(home, lines, tmp_path):
    header, rows = lines
    assert header == ",Open,High,Low,Close,Volume"  # an unnamed date column, capitalised names
    part = tmp_path / "EURUSD_1h_part01.csv"
    part.write_text("\n".join([header, *rows[FIRST : FIRST + 40]]) + "\n")
    report = _cli(home, "ingest", str(part))
    assert report["accepted"] == 40
    assert report["series"] == {"EURUSD:1h": 40}
    stored = BarStore(Settings.load(home)).read("EURUSD", "1h")
    assert len(stored) == FIRST + 40
    newest = rows[FIRST + 39].split(",")[0]
    assert stored["ts"].iloc[-1] == pd.Timestamp(newest, tz="UTC")


def test_a_ticker_column_ampm_times_and_spacing_name_the_series(home, lines, tmp_path):
    _, rows = lines
    # The next three bars, written by hand the way a broker export might: a ticker column,
    # lower-case names and a 12-hour clock.
    first_new = pd.Timestamp(rows[FIRST].split(",")[0])
    stamps = [first_new + pd.Timedelta(hours=h) for h in range(3)]
    body = ["date,open,high,low,close,volume,ticker"]
    for ts, row in zip(stamps, rows[FIRST : FIRST + 3], strict=True):
        values = row.split(",")[1:]
        body.append(f"{ts.strftime('%m/%d/%Y %I:%M %p')},{','.join(values)},eurusd")
    export = tmp_path / "export.csv"  # the name says nothing: symbol from the column, tf from spacing
    export.write_text("\n".join(body) + "\n")
    report = _cli(home, "ingest", str(export))
    assert report["series"] == {"EURUSD:1h": 3}
    stored = BarStore(Settings.load(home)).read("EURUSD", "1h")
    assert list(stored["ts"].iloc[-3:]) == [t.tz_localize("UTC") for t in stamps]


def test_ingest_refuses_what_import_refuses_with_the_same_reason(home, tmp_path):
    ambiguous = tmp_path / "EURUSD_1h_x.csv"
    ambiguous.write_text(
        "Date,Open,High,Low,Close,Volume\n"
        "01/02/2018 01:00 PM,1.2,1.21,1.19,1.2,10\n"
        "01/02/2018 02:00 PM,1.2,1.21,1.19,1.2,10\n"
    )
    runner = CliRunner()
    for command in ("ingest", "data import"):
        result = runner.invoke(app, ["--home", str(home), *command.split(), str(ambiguous)])
        assert result.exit_code == 2, result.output
        assert "ambiguous date order" in result.output
        assert "'Date'" in result.output
