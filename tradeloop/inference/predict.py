"""Rows → prediction: the one scoring path for serving, re-scoring and the parity test.

``predict`` takes windows of at least the bundle's W bars (the online store keeps the longest W
any preset may use; the last W are taken) and feature rows, runs each row's CNN and XGBoost in
one batched pass per model group, and maps the score to ``prob_up`` (the bundle's calibration),
``expected_return`` (score × past-only volatility × √h) and ``signal`` (the bundle's band).
Every shape, dtype and value problem is an :class:`~tradeloop.errors.InvalidInput` naming the
field: nothing reaches ONNX Runtime or XGBoost that they could fail on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradeloop.calibration import prob_up, signal
from tradeloop.errors import InvalidInput
from tradeloop.features import spec
from tradeloop.inference.inputs import (
    FEATURE_INPUTS,
    TF_GROUPS,
    groups_from_metadata,
    return_scale,
    xgb_inputs,
)
from tradeloop.inference.model import LoadedBundle, onnx_scores

__all__ = ["Prediction", "check_inputs", "predict"]


@dataclass(frozen=True)
class Prediction:
    """Per-row outputs, in request order."""

    score: np.ndarray  # float32 XGBoost z-score
    prob_up: np.ndarray  # float32
    expected_return: np.ndarray  # float32 h-bar log return
    signal: np.ndarray  # int8 -1 / 0 / +1
    cnn_score: np.ndarray  # float32
    version: str


def check_inputs(
    bundle: LoadedBundle, windows: np.ndarray, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(windows[:, -W:], features) as contiguous float32, or InvalidInput naming what is wrong."""
    windows = np.asarray(windows)
    features = np.asarray(features)
    if windows.ndim != 3:
        raise InvalidInput("window", f"must be [N, W, C], got shape {list(windows.shape)}")
    if features.ndim != 2:
        raise InvalidInput("features", f"must be [N, F], got shape {list(features.shape)}")
    n = len(features)
    if n == 0:
        raise InvalidInput("features", "N = 0: a request needs at least one row")
    if len(windows) != n:
        raise InvalidInput("window", f"has {len(windows)} rows but features has {n}")
    if windows.shape[2] != len(spec.CHANNELS):
        raise InvalidInput("window", f"needs C = {len(spec.CHANNELS)} channels, got {windows.shape[2]}")
    if windows.shape[1] < bundle.window:
        raise InvalidInput("window", f"needs at least W = {bundle.window} bars, got {windows.shape[1]}")
    if features.shape[1] != len(FEATURE_INPUTS):
        raise InvalidInput(
            "features", f"needs F = {len(FEATURE_INPUTS)} values per row, got {features.shape[1]}"
        )
    for name, values in (("window", windows), ("features", features)):
        if not np.issubdtype(values.dtype, np.floating):
            raise InvalidInput(name, f"must be floating point, got {values.dtype}")
    windows = np.ascontiguousarray(windows[:, -bundle.window :, :], dtype=np.float32)
    features = np.ascontiguousarray(features, dtype=np.float32)
    for name, values in (("window", windows), ("features", features)):
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise InvalidInput(name, f"row {row} holds NaN or inf")
    return windows, features


def predict(bundle: LoadedBundle, windows: np.ndarray, features: np.ndarray) -> Prediction:
    """Score N rows with ``bundle`` (see the module docstring); one ONNX and one XGBoost call per group."""
    windows, features = check_inputs(bundle, windows, features)
    n_ind = len(spec.FEATURE_NAMES)
    indicators, metadata = features[:, :n_ind], features[:, n_ind:]
    classes, timeframes = groups_from_metadata(metadata)
    cnn_score = np.empty(len(features), dtype=np.float32)
    for group in np.unique(classes):
        if group not in bundle.cnn:
            raise InvalidInput("features", f"asset class {group!r} has no CNN in model {bundle.version}")
        mask = classes == group
        cnn_score[mask] = onnx_scores(bundle.cnn[group], windows[mask])
    x = xgb_inputs(indicators, cnn_score, metadata)
    tf_groups = np.asarray([TF_GROUPS[t] for t in timeframes], dtype=object)
    score = np.empty(len(features), dtype=np.float32)
    for group in np.unique(tf_groups):
        if group not in bundle.xgb:
            raise InvalidInput(
                "features", f"timeframe group {group!r} has no XGBoost in model {bundle.version}"
            )
        mask = tf_groups == group
        score[mask] = np.asarray(bundle.xgb[group].inplace_predict(x[mask]), dtype=np.float32)
    expected = (score.astype(np.float64) * return_scale(indicators, bundle.horizon)).astype(np.float32)
    return Prediction(
        score=score,
        prob_up=prob_up(bundle.calibration, score),
        expected_return=expected,
        signal=signal(bundle.band, score),
        cnn_score=cnn_score,
        version=bundle.version,
    )
