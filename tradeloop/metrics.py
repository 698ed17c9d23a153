"""Point metrics every predictor is scored with, and a time-block bootstrap for their uncertainty.

One rule for all predictors, so that a model, a baseline and the shuffled control are comparable:

* Directional accuracy counts only rows whose realised return moved (a flat bar has no direction,
  for every predictor alike). A prediction of exactly 0 makes no call and scores 0.5, what a coin
  flip would expect, instead of counting as wrong (that would punish abstaining below chance).
* IC is Pearson's r of prediction and realised return, rank IC Spearman's ρ; both are None when
  fewer than 3 rows or either side is constant (a correlation is undefined there, not 0).

Samples of walk-forward tests are not independent: h-bar labels of consecutive bars overlap (an
MA(h−1) process) and several series share each timestamp. :func:`block_bootstrap` therefore
resamples whole timestamps, in blocks of consecutive timestamps at least h long, so both the
serial overlap and the cross-series correlation survive into every replicate; an iid bootstrap
would give intervals about √h too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats

from tradeloop.errors import InvalidInput

__all__ = [
    "BootstrapInterval",
    "block_bootstrap",
    "directional_accuracy",
    "ic",
    "point_metrics",
    "rank_ic",
    "rmse",
]


def _pair(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both vectors as 1-D float64 of equal length; NaN/inf is an error naming the argument."""
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    for name, v in (("pred", a), ("y", b)):
        if v.ndim != 1:
            raise InvalidInput(name, f"must be 1-D, got shape {v.shape}")
        if not np.isfinite(v).all():
            raise InvalidInput(name, f"{int((~np.isfinite(v)).sum())} values are NaN or infinite")
    if len(a) != len(b):
        raise InvalidInput("pred", f"has {len(a)} rows but y has {len(b)}")
    return a, b


def directional_accuracy(pred: np.ndarray, y: np.ndarray) -> float | None:
    """Share of moved rows (y ≠ 0) whose predicted sign is right; a 0 prediction scores 0.5.

    None when no row moved: there is no direction to get right.
    """
    a, b = _pair(pred, y)
    moved = b != 0
    if not moved.any():
        return None
    p, r = a[moved], b[moved]
    score = np.where(p == 0, 0.5, (np.sign(p) == np.sign(r)).astype(np.float64))
    return float(score.mean())


def _degenerate(a: np.ndarray, b: np.ndarray) -> bool:
    """A correlation is undefined with under 3 rows or a constant side."""
    return len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0


def ic(pred: np.ndarray, y: np.ndarray) -> float | None:
    """Information coefficient: Pearson's r of predictions and realised returns (None if undefined)."""
    a, b = _pair(pred, y)
    if _degenerate(a, b):
        return None
    r = float(stats.pearsonr(a, b).statistic)
    return r if math.isfinite(r) else None


def rank_ic(pred: np.ndarray, y: np.ndarray) -> float | None:
    """Rank IC: Spearman's ρ, insensitive to the scale and outliers of the predictions."""
    a, b = _pair(pred, y)
    if _degenerate(a, b):
        return None
    r = float(stats.spearmanr(a, b).statistic)
    return r if math.isfinite(r) else None


def rmse(pred: np.ndarray, y: np.ndarray) -> float | None:
    """Root mean squared error in return units (None with no rows)."""
    a, b = _pair(pred, y)
    if len(a) == 0:
        return None
    return float(np.sqrt(np.mean((a - b) ** 2)))


def point_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float | int | None]:
    """``n``, directional accuracy, IC, rank IC and RMSE of return predictions against ``y``."""
    a, b = _pair(pred, y)
    return {
        "n": len(a),
        "directional_accuracy": directional_accuracy(a, b),
        "ic": ic(a, b),
        "rank_ic": rank_ic(a, b),
        "rmse": rmse(a, b),
    }


class BootstrapInterval(tuple[np.ndarray, np.ndarray, np.ndarray]):
    """(estimate, lower, upper), unpackable as a plain 3-tuple; ``used`` counts finite replicates.

    ``used[j]`` is how many replicates gave statistic j a finite value; the interval of a statistic
    finite in fewer than half of them is NaN, because its percentiles would describe a biased
    subset of the resamples.
    """

    used: np.ndarray
    reps: int
    block: int

    def __new__(
        cls,
        estimate: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        *,
        used: np.ndarray,
        reps: int,
        block: int,
    ) -> BootstrapInterval:
        self = super().__new__(cls, (estimate, lower, upper))
        self.used = used
        self.reps = reps
        self.block = block
        return self

    @property
    def estimate(self) -> np.ndarray:
        return self[0]

    @property
    def lower(self) -> np.ndarray:
        return self[1]

    @property
    def upper(self) -> np.ndarray:
        return self[2]


def _as_stats(values: object, k: int | None) -> np.ndarray:
    """A statistic's output as a 1-D float array, None becoming NaN; its length must not change."""
    out = np.atleast_1d(np.asarray(values, dtype=object)).astype(np.float64)
    if out.ndim != 1 or (k is not None and len(out) != k):
        raise InvalidInput("statistic", f"must return a 1-D array of {k} values, got shape {out.shape}")
    return out


def block_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    time_key: np.ndarray,
    *,
    block: int | None = None,
    reps: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapInterval:
    """Circular moving-block bootstrap over time: (point estimate, lower, upper) per statistic.

    ``time_key[i]`` is row i's timestamp (any sortable values). The T distinct timestamps, in
    order, are resampled in blocks of ``block`` consecutive timestamps (wrapping around the end),
    drawn with replacement until T timestamps are covered; every row of a drawn timestamp comes
    along, so rows of several series at one bar stay together. ``block`` defaults to
    max(2, ⌈T^(1/3)⌉); pass at least the label horizon h so overlapping labels share a block.

    ``statistic(rows)`` gets row indices into the caller's arrays (the point estimate gets
    ``arange(n)``; a replicate gets its resampled rows in time order, duplicates included) and
    returns k statistics, so several metrics share one resample. None/NaN values are skipped for
    that statistic; the percentile interval at ``level`` is NaN where fewer than half the
    replicates were finite. Deterministic for a given ``seed``.
    """
    keys = np.asarray(time_key)
    if keys.ndim != 1 or len(keys) == 0:
        raise InvalidInput("time_key", "must be a non-empty 1-D array")
    if reps < 1:
        raise InvalidInput("reps", f"must be ≥ 1, got {reps}")
    if not 0.0 < level < 1.0:
        raise InvalidInput("level", f"must lie in (0, 1), got {level}")
    _, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse)
    n_times = len(counts)
    if block is None:
        block = max(2, math.ceil(n_times ** (1.0 / 3.0) - 1e-9))
    if block < 1:
        raise InvalidInput("block", f"must be ≥ 1, got {block}")
    block = min(int(block), n_times)
    by_time = np.argsort(inverse, kind="stable")  # rows grouped by timestamp, in time order
    first_row = np.concatenate([[0], np.cumsum(counts)[:-1]])

    estimate = _as_stats(statistic(np.arange(len(keys))), None)
    k = len(estimate)
    n_blocks = math.ceil(n_times / block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_times, size=(reps, n_blocks))
    offsets = np.arange(block)
    values = np.empty((reps, k))
    for b in range(reps):
        times = ((starts[b][:, None] + offsets) % n_times).ravel()[:n_times]
        sizes = counts[times]
        ends = np.cumsum(sizes)
        within = np.arange(ends[-1]) - np.repeat(ends - sizes, sizes)
        rows = by_time[np.repeat(first_row[times], sizes) + within]
        values[b] = _as_stats(statistic(rows), k)

    finite = np.isfinite(values)
    used = finite.sum(axis=0)
    lower = np.full(k, np.nan)
    upper = np.full(k, np.nan)
    tail = (1.0 - level) / 2.0 * 100.0
    for j in range(k):
        if used[j] * 2 >= reps and used[j] > 0:
            lower[j], upper[j] = np.percentile(values[finite[:, j], j], [tail, 100.0 - tail])
    return BootstrapInterval(estimate, lower, upper, used=used, reps=reps, block=block)
