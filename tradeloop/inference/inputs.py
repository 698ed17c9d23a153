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
    "TF_NAMES",
    "XGB_GROUPS",
    "group_codes",
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
TF_NAMES: tuple[str, ...] = tuple(sorted(TIMEFRAMES, key=lambda name: TIMEFRAMES[name].minutes))
XGB_GROUPS: tuple[str, ...] = tuple(sorted(set(TF_GROUPS.values())))  # codes of :func:`group_codes`
_RVOL = spec.FEATURE_NAMES.index("rvol_20")
_MINUTES = np.asarray([TIMEFRAMES[name].minutes for name in TF_NAMES], dtype=np.int64)  # increasing
_XGB_CODE = np.asarray([XGB_GROUPS.index(TF_GROUPS[name]) for name in TF_NAMES], dtype=np.int64)


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
    if not np.isfinite(rvol).all():  # nan_to_num is the slow part of one row; finite rows skip it
        rvol = np.nan_to_num(rvol, nan=0.0)
    return np.maximum(rvol, 1e-6) * math.sqrt(horizon)


def group_codes(metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, read back from the metadata columns: the asset class (an index into
    ``ASSET_CLASSES``), the timeframe (into :data:`TF_NAMES`) and the XGBoost timeframe group
    (into :data:`XGB_GROUPS`), as int64; InvalidInput naming the first row that is neither.

    Rows holding exactly the values :func:`tradeloop.features.spec.metadata_values` writes (every
    row from the feature pipeline) are looked up in a table that this very function filled at
    import; any other row takes the arithmetic below, tolerance and errors included."""
    try:
        codes = [_CANONICAL[(c, m)] for c, m in np.asarray(metadata).tolist()]
    except (KeyError, TypeError, ValueError):
        return _group_codes(metadata)
    table = np.array(codes, dtype=np.int64).reshape(-1, 3)
    return table[:, 0], table[:, 1], table[:, 2]


def _group_codes(metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    metadata = np.asarray(metadata, dtype=np.float64)
    class_id = np.rint(metadata[:, 0]).astype(np.int64)
    minutes = np.rint(np.exp(metadata[:, 1])).astype(np.int64)
    bad = (class_id < 0) | (class_id >= len(ASSET_CLASSES)) | (np.abs(metadata[:, 0] - class_id) > 1e-3)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput("features", f"row {i}: asset_class_id {metadata[i, 0]!r} is not a known class")
    tf_id = np.minimum(np.searchsorted(_MINUTES, minutes), len(_MINUTES) - 1)
    unknown = _MINUTES[tf_id] != minutes
    if unknown.any():
        i = int(np.flatnonzero(minutes == minutes[unknown].min())[0])  # as before: the smallest first
        raise InvalidInput("features", f"row {i}: tf_log_minutes {metadata[i, 1]!r} is not a known timeframe")
    return class_id, tf_id, _XGB_CODE[tf_id]


def _canonical_codes() -> dict[tuple[float, float], tuple[int, int, int]]:
    """(class id, log minutes) as the float32 feature columns hold them → :func:`_group_codes`."""
    table = {}
    for asset_class in ASSET_CLASSES:
        for timeframe in TF_NAMES:
            row = np.asarray([spec.metadata_values(asset_class, timeframe)], dtype=np.float32)
            class_id, tf_id, xgb_id = _group_codes(row)
            key = tuple(row[0].tolist())
            table[key] = (int(class_id[0]), int(tf_id[0]), int(xgb_id[0]))
    return table


_CANONICAL = _canonical_codes()


def groups_from_metadata(metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(asset class, timeframe) names per row, read back from the metadata columns."""
    class_id, tf_id, _ = group_codes(metadata)
    classes = np.asarray(ASSET_CLASSES, dtype=object)[class_id]
    timeframes = np.asarray(TF_NAMES, dtype=object)[tf_id]
    return classes, timeframes
