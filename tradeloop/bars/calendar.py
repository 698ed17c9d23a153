"""Which bars a market is expected to print, so that gaps mean missing bars, not closed markets.

crypto trades 24/7; FX from Sunday evening to Friday evening (UTC); equities on NYSE regular
trading days (weekends and the regular holidays closed). A gap is a run of expected bars that is
missing between two stored bars; market closures are not gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from pandas.tseries.holiday import (
    AbstractHolidayCalendar,
    GoodFriday,
    Holiday,
    USLaborDay,
    USMartinLutherKingJr,
    USMemorialDay,
    USPresidentsDay,
    USThanksgivingDay,
    nearest_workday,
    sunday_to_monday,
)

from tradeloop.bars.schema import Timeframe

__all__ = ["GapStats", "count_gaps"]


class _NyseCalendar(AbstractHolidayCalendar):
    """NYSE regular full-day holidays (special closures are real missing sessions)."""

    rules = [  # noqa: RUF012 - pandas reads this class attribute
        Holiday("New Year's Day", month=1, day=1, observance=sunday_to_monday),
        USMartinLutherKingJr,
        USPresidentsDay,
        GoodFriday,
        USMemorialDay,
        Holiday("Juneteenth", month=6, day=19, start_date="2022-01-01", observance=nearest_workday),
        Holiday("Independence Day", month=7, day=4, observance=nearest_workday),
        USLaborDay,
        USThanksgivingDay,
        Holiday("Christmas", month=12, day=25, observance=nearest_workday),
    ]


@cache
def _nyse_holidays(start_year: int, end_year: int) -> pd.DatetimeIndex:
    days = _NyseCalendar().holidays(f"{start_year}-01-01", f"{end_year}-12-31")
    return days.tz_localize("UTC")


@dataclass(frozen=True, slots=True)
class GapStats:
    """``gaps`` runs of missing expected bars, ``missing`` bars in all, ``longest`` run."""

    gaps: int = 0
    missing: int = 0
    longest: int = 0


def _in_session(points: pd.DatetimeIndex, tf: Timeframe, asset_class: str) -> np.ndarray:
    """Mask of grid points at which ``asset_class`` is expected to print a bar."""
    if asset_class == "fx":
        # Closed from Friday 21:00 to Sunday 23:00 UTC; the DST-dependent hour at each edge is
        # treated as closed so that neither summer nor winter sessions produce false gaps.
        dow, hour = points.dayofweek, points.hour
        closed = (dow == 5) | ((dow == 4) & (hour >= 21)) | ((dow == 6) & (hour < 23))
        return ~np.asarray(closed)
    if asset_class == "equity":
        days = points.floor("1D")
        holidays = _nyse_holidays(int(points.year.min()), int(points.year.max()))
        open_day = (days.dayofweek < 5) & ~days.isin(holidays)
        return np.asarray(open_day)
    return np.ones(len(points), dtype=bool)


def count_gaps(ts: pd.Series | pd.DatetimeIndex, tf: Timeframe, asset_class: str) -> GapStats:
    """Gaps in sorted, unique bar timestamps ``ts`` against the market's calendar.

    For intraday equities only gaps inside one trading day count: the overnight closure is not a
    gap, and which session hours a venue keeps is not known here.
    """
    index = pd.DatetimeIndex(ts)
    if len(index) < 2:
        return GapStats()
    steps = np.diff(index.asi8) // tf.delta.value
    candidates = np.flatnonzero(steps > 1)
    if asset_class == "crypto" or len(candidates) == 0:
        runs = steps[candidates] - 1
    else:
        runs = np.zeros(len(candidates), dtype=np.int64)
        for k, i in enumerate(candidates):
            between = pd.date_range(index[i] + tf.delta, index[i + 1] - tf.delta, freq=tf.delta)
            expected = _in_session(between, tf, asset_class)
            if asset_class == "equity" and tf.delta < pd.Timedelta("1D"):
                expected &= np.asarray(between.floor("1D") == index[i].floor("1D"))
            runs[k] = int(expected.sum())
    runs = runs[runs > 0]
    if len(runs) == 0:
        return GapStats()
    return GapStats(gaps=len(runs), missing=int(runs.sum()), longest=int(runs.max()))
