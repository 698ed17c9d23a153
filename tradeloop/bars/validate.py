"""Bar validation: every rejected bar leaves with a reason code, nothing is dropped silently.

Checks run per row first (``nan``, ``non_positive_price``, ``negative_volume``,
``ohlc_inconsistent``, ``off_grid``), then across rows: repeated timestamps (the first occurrence
in the file wins; an identical repeat is ``duplicate_ts``, a different one
``conflicting_duplicate``), order (bars outside the longest time-increasing run are
``unsorted``; a newest-first file is read in reverse, not rejected) and ``price_spike`` (a price
more than ``spike_log`` away from the previous accepted close, in log terms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from tradeloop.bars.schema import PRICE_COLUMNS, VALUE_COLUMNS, Timeframe

__all__ = ["DEFAULT_SPIKE_LOG", "Reason", "Validated", "longest_increasing", "validate_bars"]

# log(2): a bar whose price doubles or halves against the previous close. The largest real
# close-to-close move in the sample data is 0.21 (SOL 1h) and the largest wick 0.51.
DEFAULT_SPIKE_LOG = math.log(2.0)


class Reason(StrEnum):
    """Quarantine reason codes (DESIGN, Data)."""

    NAN = "nan"
    NON_POSITIVE_PRICE = "non_positive_price"
    NEGATIVE_VOLUME = "negative_volume"
    OHLC_INCONSISTENT = "ohlc_inconsistent"
    OFF_GRID = "off_grid"
    DUPLICATE_TS = "duplicate_ts"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    UNSORTED = "unsorted"
    PRICE_SPIKE = "price_spike"


@dataclass(frozen=True, slots=True)
class Validated:
    """``clean`` bars sorted by ts; ``rejected`` rows with ``reason`` and ``detail`` columns."""

    clean: pd.DataFrame
    rejected: pd.DataFrame
    newest_first: bool


def row_reasons(frame: pd.DataFrame, tf: Timeframe) -> pd.Series:
    """The first per-row check each row fails, or NA; vectorised over the whole frame."""
    values = frame[list(VALUE_COLUMNS)]
    o, h, low, c = (frame[k] for k in PRICE_COLUMNS)
    checks = (
        (Reason.NAN, values.isna().any(axis=1) | frame["ts"].isna()),
        (Reason.NON_POSITIVE_PRICE, (frame[list(PRICE_COLUMNS)] <= 0).any(axis=1)),
        (Reason.NEGATIVE_VOLUME, frame["volume"] < 0),
        (Reason.OHLC_INCONSISTENT, (h < np.maximum(o, c)) | (low > np.minimum(o, c)) | (h < low)),
        (Reason.OFF_GRID, frame["ts"].notna() & (tf.floor(frame["ts"]) != frame["ts"])),
    )
    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")
    for reason, failed in reversed(checks):  # earlier checks overwrite later ones
        reasons[failed.to_numpy()] = reason.value
    return reasons


def longest_increasing(values: np.ndarray) -> np.ndarray:
    """Boolean mask of one longest strictly increasing subsequence (patience sorting, n log n).

    Keeping the longest in-order run rejects the fewest bars: one bar moved out of place costs
    that bar alone, not every bar it jumped over.
    """
    n = len(values)
    tails: list[int] = []  # index of the smallest tail of an increasing run of each length
    tail_values: list[int] = []
    parent = np.full(n, -1, dtype=np.int64)
    for i, v in enumerate(values.tolist()):
        lo = _bisect_left(tail_values, v)
        parent[i] = tails[lo - 1] if lo else -1
        if lo == len(tails):
            tails.append(i)
            tail_values.append(v)
        else:
            tails[lo] = i
            tail_values[lo] = v
    keep = np.zeros(n, dtype=bool)
    i = tails[-1] if tails else -1
    while i >= 0:
        keep[i] = True
        i = parent[i]
    return keep


def _bisect_left(seq: list[int], v: int) -> int:
    lo, hi = 0, len(seq)
    while lo < hi:
        mid = (lo + hi) // 2
        if seq[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _duplicate_reasons(frame: pd.DataFrame) -> pd.Series:
    """``duplicate_ts``/``conflicting_duplicate`` for every repeat after the first occurrence."""
    repeat = frame.duplicated("ts", keep="first")
    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")
    if not repeat.any():
        return reasons
    firsts = frame.loc[~repeat].set_index("ts")[list(VALUE_COLUMNS)]
    later = frame.loc[repeat]
    same = (firsts.loc[later["ts"]].to_numpy() == later[list(VALUE_COLUMNS)].to_numpy()).all(axis=1)
    reasons[later.index[same]] = Reason.DUPLICATE_TS.value
    reasons[later.index[~same]] = Reason.CONFLICTING_DUPLICATE.value
    return reasons


def _spike_mask(frame: pd.DataFrame, spike_log: float, prev_close: float | None) -> np.ndarray:
    """Bars whose open/high/low/close sits more than ``spike_log`` from the last accepted close."""
    prices = frame[list(PRICE_COLUMNS)].to_numpy()
    closes = prices[:, 3]
    ref = np.concatenate([[prev_close if prev_close else closes[0]], closes[:-1]])
    jump = np.abs(np.log(prices / ref[:, None])).max(axis=1)
    spikes = np.zeros(len(frame), dtype=bool)
    if not (jump > spike_log).any():
        return spikes
    last = prev_close if prev_close else closes[0]
    for i in range(len(frame)):  # rare path: compare with the previous *accepted* close
        if np.abs(np.log(prices[i] / last)).max() > spike_log:
            spikes[i] = True
        else:
            last = closes[i]
    return spikes


def validate_bars(
    frame: pd.DataFrame,
    tf: Timeframe,
    *,
    spike_log: float = DEFAULT_SPIKE_LOG,
    prev_close: float | None = None,
) -> Validated:
    """Split raw bars of one series (file order) into clean sorted bars and rejected rows."""
    frame = frame.reset_index(drop=True)
    reasons = row_reasons(frame, tf)
    ok = reasons.isna().to_numpy()
    dup = _duplicate_reasons(frame.loc[ok])
    reasons.loc[dup.index] = dup.combine_first(reasons.loc[dup.index])
    ok = reasons.isna().to_numpy()

    stamps = pd.DatetimeIndex(frame.loc[ok, "ts"]).asi8
    steps = np.diff(stamps)
    newest_first = bool((steps < 0).sum() > (steps > 0).sum())
    positions = np.flatnonzero(ok)
    if newest_first:
        positions, stamps = positions[::-1], stamps[::-1]
    in_order = longest_increasing(stamps)
    reasons.iloc[positions[~in_order]] = Reason.UNSORTED.value

    kept = frame.iloc[positions[in_order]]
    spikes = _spike_mask(kept, spike_log, prev_close) if len(kept) else np.zeros(0, dtype=bool)
    reasons.loc[kept.index[spikes]] = Reason.PRICE_SPIKE.value

    clean = kept.loc[~spikes].reset_index(drop=True)
    rejected = frame.loc[reasons.notna().to_numpy()].copy()
    rejected["reason"] = reasons[reasons.notna()].astype(str).to_numpy()
    rejected["detail"] = [_detail(r) for r in rejected.itertuples(index=False)]
    return Validated(clean=clean, rejected=rejected.reset_index(drop=True), newest_first=newest_first)


def _detail(row: object) -> str:
    values = ", ".join(f"{k}={getattr(row, k)!r}" for k in ("ts", *VALUE_COLUMNS))
    return f"row {row.row}: {values}"
