"""Any mix a user imports trains: markets whose periods do not overlap each get their own plan.

GOOG daily (2004–2013), EURUSD hourly (2017–2018) and BTCUSDT hourly (2021–2023) share no period
at all. Each market group's CNN is cut inside its own period, XGBoost's folds stay global by time
(placed inside each period), and every series is tested without any row trained on a label that
ended after the start of a row it is tested on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import market_file
from tradeloop.bars.importer import import_file
from tradeloop.bars.schema import TIMEFRAMES
from tradeloop.config import Settings
from tradeloop.errors import InvalidInput
from tradeloop.registry import Registry
from training.gate import register_and_gate

BTC_BARS = 6000


def _home(root, *, goog_bars: int | None = None) -> Settings:
    settings = Settings.load(root / "home")
    goog = pd.read_csv(market_file("GOOG_1d.csv"), index_col=0)
    if goog_bars is not None:
        goog = goog.iloc[-goog_bars:]
    goog.to_csv(root / "GOOG_1d.csv")
    import_file(root / "GOOG_1d.csv", settings, symbol="GOOG")
    import_file(market_file("EURUSD_1h.csv"), settings, symbol="EURUSD")
    btc = pd.read_csv(market_file("BTCUSDT_1h.csv")).iloc[-BTC_BARS:]
    btc.to_csv(root / "BTCUSDT_1h.csv", index=False)
    import_file(root / "BTCUSDT_1h.csv", settings)
    return settings


@pytest.fixture(scope="module")
def mixed(ray_local, tmp_path_factory):
    from training.job import TrainRequest, prepare, run
    from training.presets import get_preset

    root = tmp_path_factory.mktemp("mixed")
    settings = _home(root)
    prep = prepare(settings, TrainRequest(preset=get_preset("fast"), workers=2))
    return settings, run(settings, prep, run_dir=root / "run", ray_dir=root / "ray")


def test_each_market_group_gets_a_cnn_cut_inside_its_own_period(mixed):
    _, result = mixed
    data, layout = result.prepared.data, result.prepared.plan
    assert set(layout.cnn_cutoffs) == {"crypto", "equity", "fx"}
    for group, cutoff in layout.cnn_cutoffs.items():
        mine = data.group_of("cnn") == group
        first, last = (pd.Timestamp(t, tz="UTC") for t in (data.ts[mine].min(), data.ts[mine].max()))
        assert first < cutoff < last, group
        for mask in (layout.cnn_fit, layout.cnn_val, layout.xgb):
            assert (mask & mine).sum() >= 20, group
    assert set(result.manifest["files"]) == {
        "cnn/crypto.onnx",
        "cnn/equity.onnx",
        "cnn/fx.onnx",
        "xgb/day.ubj",
        "xgb/hour.ubj",
    }


def test_every_series_is_tested_and_no_fold_trains_on_a_label_ending_after_a_test_row_starts(mixed):
    _, result = mixed
    data, layout = result.prepared.data, result.prepared.plan
    tested = set()
    for fold in layout.folds:
        test_start = data.ts[fold.test].min()
        # label end recomputed from the raw series: the open of the bar h rows later, plus one bar
        for s, series in enumerate(data.series):
            train_rows = data.row[fold.train & (data.sid == s)]
            if len(train_rows):
                bar = TIMEFRAMES[series.timeframe].delta
                end = pd.Timestamp(series.ts[train_rows.max() + data.horizon]) + bar
                assert end <= pd.Timestamp(test_start), (fold.index, series.series_id)
        tested |= {data.series[s].series_id for s in np.unique(data.sid[fold.test])}
    assert tested == {"GOOG:1d", "EURUSD:1h", "BTCUSDT:1h"}
    report = result.report
    assert report["criteria"]["rows"] == int(layout.test.sum())
    assert {m for m in report["models"]["model"]["overall"]["per_market"]} == {
        "1d/equity",
        "1h/fx",
        "1h/crypto",
    }


def test_the_mixed_bundle_registers_and_is_judged(mixed, tmp_path):
    _, result = mixed
    registry = Registry(Settings.load(tmp_path / "home"), f"sqlite:///{tmp_path / 'mlflow.db'}")
    version, decision = register_and_gate(registry, result.bundle_dir, result.report_dir, promote=False)
    assert decision.basis == "first champion: out-of-sample criteria"
    assert registry.get(version.version).tags["gate.decision"] in {"promote", "keep"}
    assert decision.checks[-1]["detail"].startswith(f"computed on {int(result.prepared.plan.test.sum()):,}")


def test_a_group_that_truly_lacks_data_is_named_with_its_rows(tmp_path):
    from training.job import TrainRequest, prepare
    from training.presets import get_preset

    settings = _home(tmp_path, goog_bars=260)
    with pytest.raises(InvalidInput) as err:
        prepare(settings, TrainRequest(preset=get_preset("fast"), workers=2))
    message = str(err.value)
    assert "cnn group 'equity'" in message
    assert "has 108 samples" in message  # 260 bars − 120 warm-up − 31 (W − 1) − 1 (h) unlabelled
    assert "needs at least 20 rows" in message
