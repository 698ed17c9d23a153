"""Leakage: every label a model trained on ended before the rows it is tested on.

Label ends are recomputed here from the stored bars themselves (the bar h rows later, plus one
bar), not read back from the dataset's own ``label_end`` column, so a wrong purge in the code
cannot hide behind a value it wrote.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradeloop.bars.schema import TIMEFRAMES
from tradeloop.bars.store import BarStore


def _independent_label_end(settings, data, idx: np.ndarray) -> np.ndarray:
    """Close of stored bar t+h for samples ``idx``, found by position in the bar store."""
    out = np.empty(len(idx), dtype="datetime64[ns]")
    store = BarStore(settings)
    for s in np.unique(data.sid[idx]):
        series = data.series[s]
        bars = store.read(series.symbol, series.timeframe)
        opens = pd.DatetimeIndex(bars["ts"]).tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")
        mine = data.sid[idx] == s
        pos = np.searchsorted(opens, data.ts[idx][mine])
        assert (opens[pos] == data.ts[idx][mine]).all()
        bar = np.timedelta64(TIMEFRAMES[series.timeframe].delta.value, "ns")
        out[mine] = opens[pos + data.horizon] + bar
    return out


def test_every_cnn_fit_label_ends_by_its_groups_cutoff(trained, crypto_home):
    data, layout = trained.prepared.data, trained.prepared.plan
    for name, fit in trained.manifest["normalisers"].items():
        group = name.split("/", 1)[1]
        cutoff = pd.Timestamp(fit["cutoff"])
        rows = trained.cnn_rows[group]
        ends = _independent_label_end(crypto_home, data, rows)
        assert (ends <= np.datetime64(cutoff.tz_localize(None))).all()
        # and nothing the CNN fitted on opens at or after the first XGBoost row of its group
        first_xgb = data.ts[layout.xgb & (data.group_of("cnn") == group)].min()
        assert ends.max() <= first_xgb


def test_every_fold_trains_only_on_labels_that_ended_before_its_first_test_row(trained, crypto_home):
    data, layout = trained.prepared.data, trained.prepared.plan
    for fold in layout.folds:
        train, test = np.flatnonzero(fold.train), np.flatnonzero(fold.test)
        ends = _independent_label_end(crypto_home, data, train)
        assert ends.max() <= data.ts[test].min(), f"fold {fold.index}"
        for s in range(len(data.series)):
            rows_train = data.row[fold.train & (data.sid == s)]
            rows_test = data.row[fold.test & (data.sid == s)]
            if len(rows_train) and len(rows_test):
                # the last training row's label (t .. t+h) closes at or before the first test bar opens
                assert rows_test.min() - rows_train.max() >= data.horizon + 1


def test_xgboost_cnn_inputs_never_come_from_rows_the_cnn_trained_on(trained):
    layout, scores = trained.prepared.plan, trained.cnn_scores
    cnn_rows = np.concatenate(list(trained.cnn_rows.values()))
    assert not layout.xgb[cnn_rows].any()
    assert not (layout.xgb & layout.cnn_train).any()
    assert np.isnan(scores[layout.cnn_train]).all()
    assert np.isfinite(scores[layout.xgb]).all()
    for fold in layout.folds:
        assert not (fold.train & layout.cnn_train).any()


def test_the_control_run_permutes_training_labels_only(trained, shuffled):
    # Every stage's training targets are a permutation of that stage's own real targets, and no
    # test row's label value moved onto a training row.
    real, control = trained.prepared, shuffled.prepared
    layout = real.plan
    for mask in (layout.cnn_fit, layout.cnn_val, layout.xgb):
        np.testing.assert_array_equal(np.sort(control.target[mask]), np.sort(real.target[mask]))
        assert (control.target[mask] != real.target[mask]).mean() > 0.5
    untouched = ~(layout.cnn_fit | layout.cnn_val | layout.xgb)
    np.testing.assert_array_equal(control.target[untouched], real.target[untouched])
