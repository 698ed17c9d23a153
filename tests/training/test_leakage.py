"""Leakage: normaliser fit ranges, purge gaps, and where XGBoost's CNN inputs come from."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_every_normaliser_fit_range_ends_at_the_training_cutoff(trained):
    data, layout = trained.prepared.data, trained.prepared.plan
    for name, fit in trained.manifest["normalisers"].items():
        group = name.split("/", 1)[1]
        cutoff = pd.Timestamp(fit["cutoff"])
        assert cutoff == layout.cnn_cutoff
        assert pd.Timestamp(fit["fit_last_label_bar"]) < cutoff
        rows = trained.cnn_rows[group]
        assert pd.Timestamp(fit["fit_end"]) == pd.Timestamp(data.ts[rows].max(), tz="UTC")
        # it ends at the cutoff: the last fitted row is the last one whose label ends before it
        fit_rows = layout.cnn_fit & (data.group_of("cnn") == group)
        assert data.ts[rows].max() == data.ts[fit_rows].max()
        assert (data.label_bar[rows] < np.datetime64(layout.cnn_cutoff.tz_localize(None))).all()


def test_no_test_row_lies_within_h_bars_after_a_training_row(trained):
    data, layout = trained.prepared.data, trained.prepared.plan
    for fold in layout.folds:
        for s in range(len(data.series)):
            train = fold.train & (data.sid == s)
            test = fold.test & (data.sid == s)
            last_train_row = data.row[train].max()
            first_test_row = data.row[test].min()
            assert first_test_row - last_train_row > data.horizon
            assert data.label_bar[train].max() < data.ts[test].min()
    cnn_end = data.label_bar[layout.cnn_train].max()
    assert cnn_end < data.ts[layout.xgb].min()


def test_xgboost_cnn_inputs_never_come_from_rows_the_cnn_trained_on(trained):
    layout, scores = trained.prepared.plan, trained.cnn_scores
    cnn_rows = np.concatenate(list(trained.cnn_rows.values()))
    assert not layout.xgb[cnn_rows].any()
    assert not (layout.xgb & layout.cnn_train).any()
    assert np.isnan(scores[layout.cnn_train]).all()
    assert np.isfinite(scores[layout.xgb]).all()
    for fold in layout.folds:
        assert not (fold.train & layout.cnn_train).any()
