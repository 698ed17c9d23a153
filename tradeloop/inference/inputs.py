"""The model's inputs, built by the one function training, re-scoring and serving all call.

A prediction needs, per series, its last W bars of CNN channels (``window``) and one row of
``features``: the indicators in :data:`tradeloop.features.spec.FEATURE_NAMES` order followed by
the market metadata (:data:`~tradeloop.features.spec.METADATA`). The metadata also says which
models apply: the CNN of the row's asset class and the XGBoost of its timeframe group.
"""

from __future__ import annotations

import math

import numpy as np

from tradeloop.bars.schema import ASSET_CLASSES, TIMEFRAMES
from tradeloop.errors import InvalidInput
from tradeloop.features import spec

__all__ = [
    "FEATURE_INPUTS",
    "TF_GROUPS",
    "groups_from_metadata",
    "return_scale",
    "xgb_feature_names",
    "xgb_inputs",
]

TF_GROUPS: dict[str, str] = {
    "1m": "minute",
    "5m": "minute",
    "15m": "minute",
    "30m": "minute",
    "1h": "hour",
    "4h": "hour",
    "1d": "day",
    "1w": "day",
}
FEATURE_INPUTS: tuple[str, ...] = (*spec.FEATURE_NAMES, *spec.METADATA)  # the ``features`` tensor order
_RVOL = spec.FEATURE_NAMES.index("rvol_20")
_BY_MINUTES = {tf.minutes: name for name, tf in TIMEFRAMES.items()}


def xgb_feature_names() -> list[str]:
    """XGBoost's ordered inputs: indicators, the CNN score, then market metadata."""
    return [*spec.FEATURE_NAMES, "cnn_score", *spec.METADATA]


def xgb_inputs(indicators: np.ndarray, cnn_score: np.ndarray, metadata: np.ndarray) -> np.ndarray:
    """XGBoost's (N, K) float32 input in :func:`xgb_feature_names` order."""
    n_ind = len(spec.FEATURE_NAMES)
    out = np.empty((len(cnn_score), n_ind + 1 + len(spec.METADATA)), dtype=np.float32)
    out[:, :n_ind] = indicators
    out[:, n_ind] = cnn_score
    out[:, n_ind + 1 :] = metadata
    return out


def return_scale(indicators: np.ndarray, horizon: int) -> np.ndarray:
    """Past-only volatility that turns a z-score into an h-bar log return: rvol_20 · √h (floored)."""
    rvol = np.asarray(indicators[:, _RVOL], dtype=np.float64)
    return np.maximum(np.nan_to_num(rvol, nan=0.0), 1e-6) * math.sqrt(horizon)


def groups_from_metadata(metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(asset class, timeframe) per row, read back from the metadata columns."""
    metadata = np.asarray(metadata, dtype=np.float64)
    class_id = np.rint(metadata[:, 0]).astype(np.int64)
    minutes = np.rint(np.exp(metadata[:, 1])).astype(np.int64)
    bad = (class_id < 0) | (class_id >= len(ASSET_CLASSES)) | (np.abs(metadata[:, 0] - class_id) > 1e-3)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput("features", f"row {i}: asset_class_id {metadata[i, 0]!r} is not a known class")
    unknown = [m for m in np.unique(minutes) if int(m) not in _BY_MINUTES]
    if unknown:
        i = int(np.flatnonzero(minutes == unknown[0])[0])
        raise InvalidInput("features", f"row {i}: tf_log_minutes {metadata[i, 1]!r} is not a known timeframe")
    classes = np.asarray(ASSET_CLASSES, dtype=object)[class_id]
    timeframes = np.asarray([_BY_MINUTES[int(m)] for m in minutes], dtype=object)
    return classes, timeframes
