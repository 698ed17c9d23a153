"""Time splits for all series together, with a purge gap so labels never straddle the cut.

A row at t carries a label that looks ``h`` bars ahead. Training rows must therefore end ``h``
bars (of each row's own timeframe) before the first test row, or the last training labels would
be computed from test-period prices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradeloop.errors import InvalidInput

__all__ = ["TimeSplit", "time_split"]


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """Boolean masks over the input rows; ``cutoff`` is the first test timestamp."""

    train: np.ndarray
    test: np.ndarray
    cutoff: pd.Timestamp

    @property
    def purged(self) -> np.ndarray:
        return ~(self.train | self.test)


def time_split(
    ts: pd.Series,
    bar_length: pd.Series | pd.Timedelta,
    *,
    test_fraction: float = 0.2,
    horizon: int = 1,
    cutoff: pd.Timestamp | None = None,
) -> TimeSplit:
    """Split rows at one cutoff time shared by every series; purge ``horizon`` bars before it.

    ``bar_length`` is each row's timeframe length (or one length for all). A row is training only
    when its label window ``[t, t + horizon·bar]`` ends strictly before ``cutoff``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInput("test_fraction", f"must lie strictly between 0 and 1, got {test_fraction}")
    if len(ts) == 0:
        raise InvalidInput("rows", "cannot split an empty set of rows")
    stamps = pd.Series(pd.DatetimeIndex(ts), dtype="datetime64[ns, UTC]").reset_index(drop=True)
    if cutoff is None:
        cutoff = stamps.quantile(1.0 - test_fraction, interpolation="higher")
    lengths = (
        bar_length
        if isinstance(bar_length, pd.Timedelta)
        else pd.to_timedelta(bar_length).reset_index(drop=True)
    )
    label_end = stamps + lengths * horizon
    train = (label_end < cutoff).to_numpy()
    test = (stamps >= cutoff).to_numpy()
    if not train.any() or not test.any():
        raise InvalidInput(
            "split", f"cutoff {cutoff} leaves an empty {'train' if not train.any() else 'test'} set"
        )
    return TimeSplit(train=train, test=test, cutoff=pd.Timestamp(cutoff))
