"""Rows → prediction: the one scoring path for serving, re-scoring and the parity test.

``predict`` takes windows of at least the bundle's W bars (the online store keeps the longest W
any preset may use; the last W are taken) and feature rows, runs each row's CNN and XGBoost in
one batched pass per model group, and maps the score to ``prob_up`` (the bundle's calibration),
``expected_return`` (score × past-only volatility × √h) and ``signal`` (the bundle's band).
Every shape, dtype and value problem is an :class:`~tradeloop.errors.InvalidInput` naming the
field: nothing reaches ONNX Runtime or XGBoost that they could fail on.

Per request it does only what depends on the rows: groups are integer codes looked up in the
bundle's precomputed tables, a request whose rows share one group (one series, or series of one
market) is scored without masks or copies, and the calibration and band are the bundle's checked
arrays. The batches each model sees are the ones the plain per-group computation would give it,
so answers are bit-identical to it (``bench/predict_core.py`` compares them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tradeloop.bars.schema import ASSET_CLASSES
from tradeloop.errors import InvalidInput
from tradeloop.features import spec
from tradeloop.inference.inputs import FEATURE_INPUTS, XGB_GROUPS, group_codes, return_scale, xgb_inputs
from tradeloop.inference.model import LoadedBundle, onnx_scores

__all__ = ["Prediction", "check_inputs", "predict"]

_N_IND = len(spec.FEATURE_NAMES)
_N_CHANNELS = len(spec.CHANNELS)
_N_FEATURES = len(FEATURE_INPUTS)


@dataclass(frozen=True)
class Prediction:
    """Per-row outputs, in request order."""

    score: np.ndarray  # float32 XGBoost z-score
    prob_up: np.ndarray  # float32
    expected_return: np.ndarray  # float32 h-bar log return
    signal: np.ndarray  # int8 -1 / 0 / +1
    cnn_score: np.ndarray  # float32
    version: str
    cnn_s: float = 0.0  # seconds in the CNN stage (checks, group codes, ONNX Runtime)
    xgb_s: float = 0.0  # seconds in the XGBoost stage (its inputs, boosters, calibration, band)


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
    if windows.shape[2] != _N_CHANNELS:
        raise InvalidInput("window", f"needs C = {_N_CHANNELS} channels, got {windows.shape[2]}")
    if windows.shape[1] < bundle.window:
        raise InvalidInput("window", f"needs at least W = {bundle.window} bars, got {windows.shape[1]}")
    if features.shape[1] != _N_FEATURES:
        raise InvalidInput("features", f"needs F = {_N_FEATURES} values per row, got {features.shape[1]}")
    for name, values in (("window", windows), ("features", features)):
        if values.dtype.kind != "f":  # what np.issubdtype(dtype, np.floating) says, for less
            raise InvalidInput(name, f"must be floating point, got {values.dtype}")
    windows = np.ascontiguousarray(windows[:, -bundle.window :, :], dtype=np.float32)
    features = np.ascontiguousarray(features, dtype=np.float32)
    for name, values in (("window", windows), ("features", features)):
        finite = np.isfinite(values)
        if not finite.all():
            row = int(np.argwhere(~finite)[0][0])
            raise InvalidInput(name, f"row {row} holds NaN or inf")
    return windows, features


def _groups(codes: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
    """(code, row mask) per distinct code in increasing order; mask None when every row has it
    (the common request: one series, or series of one group), which spares the masking copies."""
    first = int(codes[0])
    if len(codes) == 1 or bool((codes == first).all()):
        return [(first, None)]
    return [(int(code), codes == code) for code in np.unique(codes)]


def _missing(
    groups: list[tuple[int, np.ndarray | None]], models: tuple[object, ...], names: tuple[str, ...]
) -> str | None:
    """The alphabetically first group name of ``groups`` that has no model, or None."""
    absent = sorted(names[code] for code, _ in groups if models[code] is None)
    return absent[0] if absent else None


def predict(bundle: LoadedBundle, windows: np.ndarray, features: np.ndarray) -> Prediction:
    """Score N rows with ``bundle`` (see the module docstring); one ONNX and one XGBoost call per group."""
    started = time.perf_counter()
    windows, features = check_inputs(bundle, windows, features)
    indicators, metadata = features[:, :_N_IND], features[:, _N_IND:]
    class_id, _, xgb_id = group_codes(metadata)
    n = len(features)

    classes = _groups(class_id)
    if (group := _missing(classes, bundle.cnn_by_class, ASSET_CLASSES)) is not None:
        raise InvalidInput("features", f"asset class {group!r} has no CNN in model {bundle.version}")
    cnn_score = np.empty(n, dtype=np.float32)
    for code, mask in classes:
        if mask is None:
            cnn_score[:] = onnx_scores(bundle.cnn_by_class[code], windows)
        else:
            cnn_score[mask] = onnx_scores(bundle.cnn_by_class[code], windows[mask])

    cnn_done = time.perf_counter()
    x = xgb_inputs(indicators, cnn_score, metadata)
    tf_groups = _groups(xgb_id)
    if (group := _missing(tf_groups, bundle.xgb_by_group, XGB_GROUPS)) is not None:
        raise InvalidInput("features", f"timeframe group {group!r} has no XGBoost in model {bundle.version}")
    score = np.empty(n, dtype=np.float32)
    for code, mask in tf_groups:
        booster = bundle.xgb_by_group[code]
        if mask is None:
            score[:] = booster(x)
        else:
            score[mask] = booster(x[mask])

    expected = (score.astype(np.float64) * return_scale(indicators, bundle.horizon)).astype(np.float32)
    prob_up, signal = bundle.maps.prob_up(score), bundle.maps.signal(score)
    return Prediction(
        score=score,
        prob_up=prob_up,
        expected_return=expected,
        signal=signal,
        cnn_score=cnn_score,
        version=bundle.version,
        cnn_s=cnn_done - started,
        xgb_s=time.perf_counter() - cnn_done,
    )
