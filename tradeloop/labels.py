"""Labels: the forward log return from close[t] to close[t+h], and its direction.

The label at t uses bars after t by definition, so it never enters a feature; the last ``h``
bars have no label (NaN / 0) and are dropped from training sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradeloop.errors import InvalidInput

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


def make_labels(bars: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
    """``ts``, ``fwd_return`` (float64) and ``direction`` for canonical ``bars``."""
    ret = forward_return(bars["close"].to_numpy(), horizon)
    return pd.DataFrame({"ts": bars["ts"].to_numpy(), "fwd_return": ret, "direction": direction(ret)})
