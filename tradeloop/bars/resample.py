"""Resample stored bars to a higher timeframe, emitting complete bars only.

A 24/7 (crypto) period is complete when every one of its source bars is present. Markets with
closures (equity, FX) cannot be held to a fixed count, so there a period is complete once a
later source bar exists (the period has ended and nothing more can arrive for it) and, for the
first period, when the data starts at its beginning.
"""

from __future__ import annotations

import pandas as pd

from tradeloop.bars.schema import Timeframe
from tradeloop.errors import InvalidInput

__all__ = ["resample_bars"]


def resample_bars(bars: pd.DataFrame, source: Timeframe, target: Timeframe, asset_class: str) -> pd.DataFrame:
    """Complete ``target`` bars built from canonical ``source`` bars of one series."""
    if target.delta <= source.delta or target.delta % source.delta != pd.Timedelta(0):
        raise InvalidInput("to", f"{target} is not a whole multiple of {source}")
    if bars.empty:
        return bars.assign(timeframe=target.name)
    period = target.floor(bars["ts"])
    grouped = bars.groupby(period, sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        count=("close", "size"),
    )
    if asset_class == "crypto":
        complete = out["count"] == target.delta // source.delta
    else:
        complete = out.index < period.iloc[-1]
        # Data that starts mid-period cannot say what came before: the first period is partial.
        complete &= ~((out.index == period.iloc[0]) & (bars["ts"].iloc[0] != period.iloc[0]))
    out = out.loc[complete].drop(columns="count").rename_axis("ts").reset_index()
    out.insert(1, "symbol", bars["symbol"].iloc[0])
    out.insert(2, "timeframe", target.name)
    return out
