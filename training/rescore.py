"""Score the champion on the challenger's walk-forward windows, so a retrain can be judged.

A retrain on new data has new windows, so the champion's stored fold metrics say nothing about
them. This module runs the champion's own artifacts (ONNX CNNs, XGBoost boosters, through
``tradeloop.inference.predict``, exactly as serving does) over the challenger's test rows that
lie wholly after the champion's training data (labels included), and puts both models' numbers
on those rows side by side in the shape the gate compares. Rows of series the champion has no
model group for are left out of both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradeloop.bars.schema import TIMEFRAMES
from tradeloop.errors import BundleIntegrityError
from tradeloop.features import spec
from tradeloop.inference import load_bundle, predict, xgb_feature_names
from training.evaluate import context, fold_metrics
from training.job import TrainResult

__all__ = ["MIN_ROWS", "incompatibility", "rescore"]

MIN_ROWS = 50  # fewer common rows in a fold than this is too little to judge on


def incompatibility(champion: dict[str, Any], result: TrainResult) -> str | None:
    """Why the champion cannot score the challenger's rows, or None when it can."""
    data = result.prepared.data
    label = (champion.get("evaluation", {}).get("context") or {}).get("label")
    checks = (
        ("feature spec", champion.get("spec_version"), spec.SPEC_VERSION),
        ("XGBoost inputs", champion.get("xgb_features"), xgb_feature_names()),
        ("horizon", champion.get("horizon"), data.horizon),
        ("label definition", label, context(data, {})["label"]),
    )
    for what, theirs, ours in checks:
        if theirs != ours:
            return f"champion was built for another {what} ({theirs!r} vs {ours!r})"
    return None


def _champion_predictions(root: Path, result: TrainResult, rows: np.ndarray) -> np.ndarray:
    """The champion's return predictions on ``rows`` through the serving path
    (:func:`tradeloop.inference.predict`), NaN elsewhere."""
    data = result.prepared.data
    bundle = load_bundle(root)
    pred = np.full(len(data), np.nan)
    for start in range(0, len(rows), 8192):
        chunk = rows[start : start + 8192]
        out = predict(bundle, data.windows(chunk, bundle.window), data.inputs(chunk))
        pred[chunk] = out.expected_return
    return pred


def rescore(
    champion_dir: Path, champion: dict[str, Any], result: TrainResult
) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """(challenger, champion) evaluations on the same rows, or the reason there are none.

    Both sides are scored with the challenger's cost model and metric rules; the champion keeps
    its own window length W (its ONNX graph has a fixed W axis).
    """
    reason = incompatibility(champion, result)
    if reason:
        return reason
    data, plan = result.prepared.data, result.prepared.plan
    longest = max(TIMEFRAMES[tf].delta for tf in {s.split(":")[1] for s in champion["series"]})
    seen_until = pd.Timestamp(champion["data"]["end"]) + longest * (champion["horizon"] + 1)  # label end
    after = data.ts > seen_until.tz_convert("UTC").tz_localize(None).to_datetime64()
    known = np.isin(data.group_of("cnn"), list(champion["models"]["cnn"])) & np.isin(
        data.group_of("xgb"), list(champion["models"]["xgb"])
    )
    known &= data.row >= champion["window"] - 1  # rows with a full window of the champion's W
    costs = result.prepared.request.preset.costs_bps
    folds, ours, theirs = [], [], []
    candidates = np.zeros(len(data), dtype=bool)
    for fold in plan.folds:
        candidates |= fold.test & after & known
    try:
        pred = _champion_predictions(champion_dir, result, np.flatnonzero(candidates))
    except BundleIntegrityError as exc:
        return f"the champion's bundle cannot be served by this tradeloop ({exc})"
    for fold in plan.folds:
        idx = np.flatnonzero(fold.test & after & known)
        if len(idx) < MIN_ROWS:
            continue
        ts = pd.DatetimeIndex(data.ts[idx], tz="UTC")
        folds.append({"fold": fold.index, "start": ts.min().isoformat(), "end": ts.max().isoformat()})
        ours.append({"fold": fold.index, **fold_metrics(data, idx, result.preds["model"], costs)})
        theirs.append({"fold": fold.index, **fold_metrics(data, idx, pred, costs)})
    if not folds:
        return f"no challenger test window after the champion's data (ends {champion['data']['end']})"
    series = sorted({data.series[s].series_id for s in np.unique(data.sid[candidates])})
    shape = {"folds": folds, "series": series, "context": context(data, costs)}
    return shape | {"predictors": {"model": ours}}, shape | {"predictors": {"model": theirs}}
