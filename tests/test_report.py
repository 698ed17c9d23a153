"""``tradeloop report`` on homes at two early points of the loop: nothing yet, and bars imported.

(The full report, with training, serving, drift and promotions, is checked on the demo's home in
tests/test_demo.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import backtesting
import pandas as pd
from typer.testing import CliRunner

from tradeloop.cli.main import app

GOOG = Path(backtesting.__file__).parent / "test" / "GOOG.csv"


def _report(home: Path) -> str:
    result = CliRunner().invoke(app, ["--home", str(home), "--json", "report"])
    assert result.exit_code == 0, result.output
    path = Path(json.loads(result.stdout)["path"])
    assert path == home.resolve() / "report" / "index.html"
    return path.read_text()


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<h2 id="{anchor}">.*?</h2>(.*?)(?=<h2 |</body>)', page, re.S)
    assert match, anchor
    return match.group(1)


def test_an_empty_home_gets_a_report_that_says_what_is_missing(tmp_path):
    page = _report(tmp_path / "home")
    assert "No bars stored yet" in _section(page, "quality")
    assert "No model trained yet" in _section(page, "training")
    assert "No serving measurements yet" in _section(page, "serving")
    assert "No monitor check yet" in _section(page, "drift")
    assert "Nothing promoted yet" in _section(page, "promotions")


def test_data_quality_counts_the_imported_bars_and_the_refused_ones(tmp_path):
    # GOOG's daily bars with two rows spoiled by hand: a high below its low, and a missing close.
    frame = pd.read_csv(GOOG, index_col=0)
    frame.iloc[100, frame.columns.get_loc("High")] = frame.iloc[100]["Low"] - 1.0
    frame.iloc[200, frame.columns.get_loc("Close")] = float("nan")
    source = tmp_path / "GOOG_1d.csv"
    frame.to_csv(source)
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["--home", str(home), "data", "import", str(source)])
    assert result.exit_code in (0, 2), result.output
    quality = _section(_report(home), "quality")
    row = re.search(r"<tr><td>GOOG:1d</td>(.*?)</tr>", quality).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[0] == f"{len(frame) - 2:,}"  # 2,148 rows in the package's file, two refused
    assert cells[1] == "2004-08-19 00:00"
    assert cells[2] == "2013-03-01 00:00"
    assert "nan 1" in cells[-1]
    assert sum(int(n) for n in re.findall(r" (\d+)", cells[-1])) == 2
