"""``tradeloop features build`` writes offline tables; ``features verify`` reports parity."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from tests.conftest import market_file
from tradeloop.cli.main import app
from tradeloop.config import Settings
from tradeloop.features import spec
from tradeloop.features.offline import feature_path

runner = CliRunner()


def test_build_writes_float32_features_from_warmup_on(tmp_path) -> None:
    home = ["--home", str(tmp_path / "home"), "--json"]
    assert runner.invoke(app, [*home, "data", "import", str(market_file("EURUSD_1h.csv"))]).exit_code == 0
    result = runner.invoke(app, [*home, "features", "build"])
    assert result.exit_code == 0, result.output
    (built,) = json.loads(result.stdout)
    assert built == {"series": "EURUSD:1h", "rows": 5000 - spec.WARMUP, "path": built["path"]}
    table = pd.read_parquet(feature_path(Settings.load(tmp_path / "home"), "EURUSD", "1h"))
    assert list(table.columns[:3]) == ["series_id", "ts", "created"]
    for name in (*spec.FEATURE_NAMES, *spec.CHANNELS, *spec.METADATA):
        assert table[name].dtype == np.float32, name
    assert np.isfinite(table[list(spec.FEATURE_NAMES)].to_numpy()).all()
    assert (table["series_id"] == "EURUSD:1h").all()
    assert table["asset_class_id"].iloc[0] == 2.0  # fx


def test_verify_reports_each_series_and_passes(tmp_path) -> None:
    home = ["--home", str(tmp_path / "home"), "--json"]
    for name in ("AAPL_1d.csv", "GOOG_1d.csv"):
        runner.invoke(app, [*home, "data", "import", str(market_file(name))])
    result = runner.invoke(app, [*home, "features", "verify"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    assert [s["series"] for s in payload["series"]] == ["AAPL:1d", "GOOG:1d"]
    assert all(s["max_rel_diff"] <= 1e-5 for s in payload["series"])


def test_unknown_series_is_a_clear_error(tmp_path) -> None:
    result = runner.invoke(
        app, ["--home", str(tmp_path / "home"), "features", "verify", "--series", "NOPE:1h"]
    )
    assert result.exit_code == 2
    assert "NOPE:1h" in result.output
    bad_tf = runner.invoke(
        app, ["--home", str(tmp_path / "home"), "features", "verify", "--series", "NOPE:7h"]
    )
    assert bad_tf.exit_code == 2
    assert "timeframe" in bad_tf.output


def test_json_mode_prints_only_json(tmp_path) -> None:
    result = runner.invoke(app, ["--home", str(tmp_path), "--json", "data", "list"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
