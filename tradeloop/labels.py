"""Labels: the forward log return from close[t] to close[t+h], its direction and its end time.

The label at t uses bars after t by definition, so it never enters a feature; the last ``h``
bars have no label (NaN / 0 / NaT) and are dropped from training sets. ``label_end`` is the close
of bar t+h counted in stored rows: the time the purge (:mod:`tradeloop.splits`) compares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradeloop.bars.schema import TIMEFRAMES
from tradeloop.errors import InvalidInput
from tradeloop.splits import label_end_times

__all__ = ["direction", "forward_return", "make_labels"]


def forward_return(close: np.ndarray, horizon: int = 1) -> np.ndarray:
    """log(close[t + h] / close[t]); NaN for the last ``h`` bars."""
    if horizon < 1:
        raise InvalidInput("horizon", f"must be at least 1 bar, got {horizon}")
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(close), np.nan)
    if len(close) > horizon:
        out[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return out


def direction(returns: np.ndarray) -> np.ndarray:
    """Sign of the forward return as int8 (-1, 0, 1); 0 where the return is NaN or flat."""
    return np.sign(np.nan_to_num(returns, nan=0.0)).astype(np.int8)


def make_labels(bars: pd.DataFrame, horizon: int = 1, timeframe: str | None = None) -> pd.DataFrame:
    """``ts``, ``fwd_return`` (float64), ``direction`` and ``label_end`` (UTC) for canonical ``bars``
    of one series; its bar length comes from ``timeframe`` or the bars' ``timeframe`` column."""
    if timeframe is None:
        found = bars["timeframe"].unique() if "timeframe" in bars else []
        if len(found) != 1:
            raise InvalidInput("timeframe", f"labels are per series; bars carry {list(found)!r}")
        timeframe = str(found[0])
    if timeframe not in TIMEFRAMES:
        raise InvalidInput("timeframe", f"{timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    ret = forward_return(bars["close"].to_numpy(), horizon)
    end = label_end_times(bars["ts"], horizon, TIMEFRAMES[timeframe].delta)
    return pd.DataFrame(
        {
            "ts": bars["ts"].to_numpy(),
            "fwd_return": ret,
            "direction": direction(ret),
            "label_end": pd.DatetimeIndex(end).tz_localize("UTC"),
        }
    )
