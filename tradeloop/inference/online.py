"""Series → model inputs from the online store, with the staleness rule.

One store round trip reads every series of a request (:class:`tradeloop.feature_store.OnlineReader`).
Features older than the timeframe allows raise :class:`~tradeloop.errors.StaleFeatures`: a model
fed yesterday's bars answers a different question than the caller asked. The allowed age is
``STALE_BARS`` bars of the series' timeframe plus ``GRACE_S`` seconds (the next bar must have
closed, been ingested and pushed), or a fixed number of seconds from ``--max-feature-age`` /
``TRADELOOP_MAX_FEATURE_AGE``; ``0`` turns the check off for replays of history and demos.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from tradeloop.bars.schema import TIMEFRAMES, parse_series_id, series_id
from tradeloop.errors import InvalidInput, StaleFeatures
from tradeloop.feature_store import OnlineRow
from tradeloop.features import spec
from tradeloop.inference.inputs import FEATURE_INPUTS

__all__ = [
    "GRACE_S",
    "MAX_AGE_ENV",
    "STALE_BARS",
    "SeriesInputs",
    "allowed_age_s",
    "max_age_setting",
    "series_ids",
    "series_inputs",
]

STALE_BARS = 3
GRACE_S = 120.0
MAX_AGE_ENV = "TRADELOOP_MAX_FEATURE_AGE"
_FEATURE_VALUES = operator.itemgetter(*FEATURE_INPUTS)  # a row's values in FEATURE_INPUTS order


def max_age_setting(value: float | str | None = None) -> float | None:
    """The configured max feature age in seconds (None = per-timeframe default, 0 = off)."""
    raw = value if value is not None else os.environ.get(MAX_AGE_ENV)
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError as exc:
        raise InvalidInput("max_feature_age", f"{raw!r} is not a number of seconds") from exc
    if not np.isfinite(seconds) or seconds < 0:
        raise InvalidInput("max_feature_age", f"must be 0 (off) or a positive number of seconds, got {raw}")
    return seconds


def allowed_age_s(timeframe: str, setting: float | None) -> float | None:
    """Seconds a feature row of ``timeframe`` may be old; None when the check is off."""
    if setting == 0:
        return None
    if setting is not None:
        return setting
    return STALE_BARS * TIMEFRAMES[timeframe].delta.total_seconds() + GRACE_S


def series_ids(symbols: Sequence[str], timeframes: Sequence[str]) -> list[str]:
    """``SYMBOL:TF`` ids of a request, validating each timeframe (InvalidInput names the field)."""
    if len(symbols) != len(timeframes):
        raise InvalidInput("timeframe", f"has {len(timeframes)} values but symbol has {len(symbols)}")
    out = []
    for i, (symbol, timeframe) in enumerate(zip(symbols, timeframes, strict=True)):
        if not isinstance(symbol, str) or not symbol.strip():
            raise InvalidInput("symbol", f"row {i}: empty symbol")
        if timeframe not in TIMEFRAMES:
            raise InvalidInput("timeframe", f"row {i}: {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
        out.append(series_id(symbol.strip(), timeframe))
    return out


@dataclass(frozen=True)
class SeriesInputs:
    """Model inputs of named series, in request order."""

    series_ids: list[str]
    windows: np.ndarray  # (N, W_online, C) float32
    features: np.ndarray  # (N, len(FEATURE_INPUTS)) float32
    as_of: list[datetime]  # open time of the newest bar in the features
    age_s: np.ndarray  # float64 seconds since ``as_of``


@functools.lru_cache(maxsize=4096)
def _timeframe(series: str) -> str:
    """The timeframe of a ``SYMBOL:TF`` id (validated as ``parse_series_id`` does; ids repeat)."""
    return parse_series_id(series)[1]


def series_inputs(
    rows: Sequence[OnlineRow], *, max_age: float | None, now: datetime | None = None
) -> SeriesInputs:
    """Stack online rows into model inputs; StaleFeatures for missing or too old features."""
    now = now or datetime.now(UTC)
    channels = len(spec.CHANNELS)
    ages = np.empty(len(rows), dtype=np.float64)
    windows, values_of, as_of = [], [], []
    allowed_by_tf: dict[str, float | None] = {}
    for i, row in enumerate(rows):
        timeframe = _timeframe(row.series_id)
        try:
            values = _FEATURE_VALUES(row.values)
        except KeyError:  # a row without some name: that value is missing
            values = tuple(row.values.get(n) for n in FEATURE_INPUTS)
        if row.window is None or row.event_ts is None or None in values:
            missing = [n for n, v in zip(FEATURE_INPUTS, values, strict=True) if v is None]
            what = "window" if row.window is None else ", ".join(missing[:3]) or "event time"
            raise StaleFeatures(
                f"{row.series_id}: online features incomplete ({what}); materialize or ingest"
            )
        stamp = min(row.event_ts, row.window_ts or row.event_ts)
        age = (now - stamp).total_seconds()
        if timeframe not in allowed_by_tf:
            allowed_by_tf[timeframe] = allowed_age_s(timeframe, max_age)
        allowed = allowed_by_tf[timeframe]
        if allowed is not None and age > allowed:
            raise StaleFeatures(
                f"{row.series_id}: features are {age:,.0f} s old (bar {stamp.isoformat()}); "
                f"{timeframe} allows {allowed:,.0f} s"
            )
        windows.append(np.asarray(row.window, dtype=np.float32).reshape(-1, channels))
        values_of.append(values)
        as_of.append(stamp)
        ages[i] = age
    n, width = len(values_of), len(FEATURE_INPUTS)
    flat = itertools.chain.from_iterable(values_of)  # one float32 cast per value, as np.asarray does
    return SeriesInputs(
        series_ids=[r.series_id for r in rows],
        windows=np.stack(windows),
        features=np.fromiter(flat, dtype=np.float32, count=n * width).reshape(n, width),
        as_of=as_of,
        age_s=ages,
    )
