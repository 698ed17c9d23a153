"""Replay a series through the streaming path and measure its largest difference from batch.

This is the check behind ``tradeloop features verify`` and the parity tests: after warm-up, every
indicator and channel of every bar must agree to ``TOLERANCE`` relative. The relative difference
is taken against ``max(|a|, |b|, FLOOR)``: values below FLOOR (1e-7, float32's resolution near 1)
are compared absolutely, so a ratio that is 0 on one path and 1e-13 on the other is not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradeloop.features import spec
from tradeloop.features.batch import compute_features
from tradeloop.features.streaming import StreamingFeatures

__all__ = ["FLOOR", "TOLERANCE", "Parity", "relative_difference", "replay", "streaming_matrix"]

TOLERANCE = 1e-5
FLOOR = 1e-7


@dataclass(frozen=True, slots=True)
class Parity:
    """Largest relative batch/streaming difference after warm-up, and where it occurred."""

    rows: int
    max_rel_diff: float
    worst_feature: str | None
    worst_ts: str | None

    @property
    def ok(self) -> bool:
        return self.max_rel_diff <= TOLERANCE


def streaming_matrix(bars: pd.DataFrame, state: StreamingFeatures | None = None) -> np.ndarray:
    """Features (indicators then channels, float32) from feeding ``bars`` one by one."""
    stream = state or StreamingFeatures()
    rows = []
    for o, h, low, c, v in bars[["open", "high", "low", "close", "volume"]].itertuples(index=False):
        feats, channel = stream.update(o, h, low, c, v)
        rows.append((*feats, *channel))
    width = len(spec.FEATURE_NAMES) + len(spec.CHANNELS)
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), width)


def relative_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| / max(|a|, |b|, FLOOR), with two NaNs counting as equal and one NaN as 1."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), FLOOR)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b) / scale
    both_nan = np.isnan(a) & np.isnan(b)
    return np.where(both_nan, 0.0, np.where(np.isnan(diff), 1.0, diff))


def replay(bars: pd.DataFrame, warmup: int = spec.WARMUP) -> Parity:
    """Compare batch and streaming features of canonical ``bars`` on every bar after ``warmup``."""
    names = [*spec.FEATURE_NAMES, *spec.CHANNELS]
    batch = compute_features(bars)[names].to_numpy()[warmup:]
    stream = streaming_matrix(bars)[warmup:]
    if len(batch) == 0:
        return Parity(0, 0.0, None, None)
    diff = relative_difference(batch, stream)
    row, col = np.unravel_index(int(np.argmax(diff)), diff.shape)
    worst = float(diff[row, col])
    if worst == 0.0:
        return Parity(len(batch), 0.0, None, None)
    return Parity(len(batch), worst, names[col], bars["ts"].iloc[warmup + row].isoformat())
