"""Time splits for all series together, with one purge rule for every path that trains.

A row at bar t carries a label that runs from the close of bar t to the close of bar t+h, where
t+h is counted in the series' own stored rows (so a weekend, a holiday or an exchange outage
inside the label stretches it, exactly as the prices do). A row may train a model that is tested
from ``cutoff`` on only when its label has ended by then: ``label_end <= cutoff``. The first test
row opens at ``cutoff``, so no training label overlaps any test row's bar or label, whatever the
timeframes mixed. The trainer (``training.datasets``) and the Feast point-in-time training set
(``tradeloop.training_set``) both cut with :func:`time_split` over :func:`label_end_times`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradeloop.errors import InvalidInput

__all__ = ["TimeSplit", "ended_by", "label_end_times", "time_split"]


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """Boolean masks over the input rows; ``cutoff`` is the first test timestamp."""

    train: np.ndarray
    test: np.ndarray
    cutoff: pd.Timestamp

    @property
    def purged(self) -> np.ndarray:
        return ~(self.train | self.test)


def label_end_times(ts: np.ndarray | pd.Series, horizon: int, bar: pd.Timedelta) -> np.ndarray:
    """Close time of bar r+h for every row r of ONE series (NaT for the last ``horizon`` rows).

    ``ts`` are the series' bar open times in order; the close of bar r+h is its open plus one bar.
    """
    if horizon < 1:
        raise InvalidInput("horizon", f"must be at least 1 bar, got {horizon}")
    stamps = pd.DatetimeIndex(ts)
    if stamps.tz is not None:
        stamps = stamps.tz_convert("UTC").tz_localize(None)
    opens = stamps.to_numpy(dtype="datetime64[ns]")
    out = np.full(len(opens), np.datetime64("NaT"), dtype="datetime64[ns]")
    if len(opens) > horizon:
        out[:-horizon] = opens[horizon:] + np.timedelta64(pd.Timedelta(bar).value, "ns")
    return out


def _naive_ns(values: np.ndarray | pd.Series) -> np.ndarray:
    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.to_numpy(dtype="datetime64[ns]")


def ended_by(label_end: np.ndarray | pd.Series, cutoff: pd.Timestamp) -> np.ndarray:
    """The purge rule: True for rows whose label has ended by ``cutoff`` (and so may train).

    A row without a label end (NaT: no label yet) never trains.
    """
    ends = _naive_ns(label_end)
    return ~np.isnat(ends) & (ends <= _cut_ns(cutoff))


def _cut_ns(cutoff: pd.Timestamp) -> np.datetime64:
    cut = pd.Timestamp(cutoff)
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    return np.datetime64(cut.tz_localize(None).as_unit("ns"))


def time_split(
    ts: np.ndarray | pd.Series,
    label_end: np.ndarray | pd.Series,
    *,
    test_fraction: float = 0.2,
    cutoff: pd.Timestamp | None = None,
) -> TimeSplit:
    """Split rows at one cutoff shared by every series; a row trains only if its label has ended.

    ``label_end`` is each row's label end (:func:`label_end_times`); rows without one (NaT) never
    train. Without ``cutoff`` the test set is the last ``test_fraction`` of the timestamps.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInput("test_fraction", f"must lie strictly between 0 and 1, got {test_fraction}")
    if len(ts) == 0:
        raise InvalidInput("rows", "cannot split an empty set of rows")
    stamps, ends = _naive_ns(ts), _naive_ns(label_end)
    if len(stamps) != len(ends):
        raise InvalidInput("label_end", f"has {len(ends)} values for {len(stamps)} rows")
    if cutoff is None:
        cut = np.quantile(stamps.view(np.int64), 1.0 - test_fraction, method="higher")
        cutoff = pd.Timestamp(int(cut), tz="UTC")
    cutoff = pd.Timestamp(cutoff)
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
    train = ended_by(ends, cutoff)
    test = stamps >= _cut_ns(cutoff)
    if not train.any() or not test.any():
        raise InvalidInput(
            "split", f"cutoff {cutoff} leaves an empty {'train' if not train.any() else 'test'} set"
        )
    return TimeSplit(train=train, test=test, cutoff=cutoff)
