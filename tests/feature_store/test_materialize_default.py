"""``tradeloop features materialize`` with no options is incremental up to now."""

from __future__ import annotations

import json
from pathlib import Path

import backtesting
from typer.testing import CliRunner

from tradeloop.cli.main import app

GOOG = Path(backtesting.__file__).parent / "test" / "GOOG.csv"


def _cli(home: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["--home", str(home), "--json", *args])
    assert result.exit_code == 0, result.output[-2000:]
    return json.loads(result.stdout)


def test_materialize_without_options_loads_everything_new_up_to_now(tmp_path):
    home = tmp_path / "home"
    _cli(home, "data", "import", str(GOOG), "--symbol", "GOOG")
    _cli(home, "features", "build")
    _cli(home, "features", "apply")
    first = _cli(home, "features", "materialize")
    assert first["incremental"] is True
    online = _cli(home, "features", "get", "GOOG", "1d")
    assert online["as_of"].startswith("2013-03-01")  # the last bar of the package's GOOG.csv
    again = _cli(home, "features", "materialize")  # nothing new: still fine, still incremental
    assert again["incremental"] is True


def test_start_and_incremental_together_are_refused_naming_the_option(tmp_path):
    result = CliRunner().invoke(
        app, ["--home", str(tmp_path), "features", "materialize", "--incremental", "--start", "2020-01-01"]
    )
    assert result.exit_code == 2
    assert "start" in result.output
