"""Training sets from the feature store: labelled (series_id, ts) rows, point-in-time features, split.

Rows come from the bar store (one per bar with a label), features from Feast's
``get_historical_features``, so each row gets the newest feature row stamped at or before its
own timestamp and nothing later. The split is by time for all series together with the one purge
rule the trainer uses (:func:`tradeloop.splits.time_split`): a row trains only when its label, the
close of bar t+h counted in the series' stored rows, has ended by the cutoff.

The trainer itself (``training.datasets``) reads the same offline Parquet directly rather than
through Feast: Feast's embedded offline stores cannot join a full training set in memory (see
DESIGN's measured facts). Both give identical rows, labels, values and splits (a test checks it).

Cost on the embedded default: Feast's file (dask) offline store joins every entity row with
every feature row of its series and filters afterwards, so one call costs rows × history.
Rows are therefore sent in chunks of ``chunk`` (memory stays near chunk × history rows), and
large sets belong on a cluster offline store; ``start``/``end`` bound the rows asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from tradeloop.bars.schema import parse_series_id
from tradeloop.bars.store import BarStore
from tradeloop.config import Settings
from tradeloop.errors import UnknownSeries
from tradeloop.feature_store import historical_features, open_store
from tradeloop.labels import make_labels
from tradeloop.splits import TimeSplit, time_split

__all__ = ["TrainingSet", "label_rows", "training_set"]


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """``frame``: series_id, event_timestamp, fwd_return, direction, label_end and the features;
    ``split`` masks its rows (train / purged / test)."""

    frame: pd.DataFrame
    split: TimeSplit


def label_rows(
    settings: Settings,
    series: Sequence[str],
    horizon: int = 1,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per stored bar with a label (in ``[start, end]`` when given): series_id,
    event_timestamp, fwd_return, direction, label_end."""
    store, parts = BarStore(settings), []
    for sid in series:
        symbol, timeframe = parse_series_id(sid)
        bars = store.read(symbol, timeframe)
        if bars.empty:
            raise UnknownSeries(sid, "no stored bars")
        labels = make_labels(bars, horizon).iloc[:-horizon]
        if start is not None:
            labels = labels.loc[labels["ts"] >= start]
        if end is not None:
            labels = labels.loc[labels["ts"] <= end]
        parts.append(labels.rename(columns={"ts": "event_timestamp"}).assign(series_id=sid))
    frame = pd.concat(parts, ignore_index=True)
    return frame[["series_id", "event_timestamp", "fwd_return", "direction", "label_end"]]


def training_set(
    settings: Settings,
    series: Sequence[str],
    *,
    horizon: int = 1,
    test_fraction: float = 0.2,
    cutoff: pd.Timestamp | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    chunk: int = 64,
) -> TrainingSet:
    """Point-in-time features for every labelled bar of ``series``, split by time with a purge.

    Rows with no feature row at or before their timestamp (the warm-up bars) are dropped by the
    join: there is nothing to train on there.
    """
    rows = label_rows(settings, series, horizon, start=start, end=end)
    store = open_store(settings)
    parts = [historical_features(store, rows.iloc[i : i + chunk]) for i in range(0, len(rows), chunk)]
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values(["event_timestamp", "series_id"], kind="stable").reset_index(drop=True)
    split = time_split(
        frame["event_timestamp"], frame["label_end"], test_fraction=test_fraction, cutoff=cutoff
    )
    return TrainingSet(frame=frame, split=split)
