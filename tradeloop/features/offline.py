"""Offline feature tables: one Parquet per stored series under ``HOME/data/features``.

Layout ``features/timeframe=TF/symbol=SYM/features.parquet``, one row per bar from warm-up on:
``series_id``, ``ts`` (bar open time, the event timestamp), ``created``, every indicator and
channel (float32) and the numeric market metadata. Rewritten whole on each build (atomically),
since a new bar can only append rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tradeloop.bars.schema import series_id
from tradeloop.bars.store import BarStore, write_parquet_atomic
from tradeloop.bars.symbols import SymbolTable
from tradeloop.config import Settings
from tradeloop.features import spec
from tradeloop.features.batch import feature_matrix

__all__ = ["FeatureTable", "build_series", "feature_frame", "feature_path", "feature_rows", "read_features"]


@dataclass(frozen=True, slots=True)
class FeatureTable:
    """What one build wrote for one series."""

    series_id: str
    rows: int
    path: Path


def feature_path(settings: Settings, symbol: str, timeframe: str) -> Path:
    return settings.features_dir / f"timeframe={timeframe}" / f"symbol={symbol}" / "features.parquet"


def feature_rows(
    sid: str, ts: pd.Series, values: np.ndarray, created: pd.Timestamp, meta: tuple[float, ...]
) -> pd.DataFrame:
    """Offline rows in the one layout both writers use (batch build and live ingest).

    ``values`` holds indicators then channels (float32) per row; ``meta`` the metadata values.
    """
    frame = pd.DataFrame(values, columns=[*spec.FEATURE_NAMES, *spec.CHANNELS], copy=False)
    frame.insert(0, "series_id", sid)
    frame.insert(1, "ts", pd.DatetimeIndex(ts).as_unit("ns"))
    frame.insert(2, "created", created)
    for name, value in zip(spec.METADATA, meta, strict=True):
        frame[name] = np.float32(value)
    return frame


def feature_frame(bars: pd.DataFrame, symbol: str, timeframe: str, asset_class: str) -> pd.DataFrame:
    """The offline feature rows of one series (warm-up rows dropped)."""
    return feature_rows(
        series_id(symbol, timeframe),
        bars["ts"].iloc[spec.WARMUP :],
        feature_matrix(bars)[spec.WARMUP :],
        pd.Timestamp.now(tz="UTC"),
        spec.metadata_values(asset_class, timeframe),
    )


def build_series(settings: Settings, symbol: str, timeframe: str) -> FeatureTable:
    """Compute and write the offline features of one stored series."""
    bars = BarStore(settings).read(symbol, timeframe)
    asset_class = SymbolTable(settings).get(symbol).asset_class
    table = feature_frame(bars, symbol, timeframe, asset_class)
    path = feature_path(settings, symbol, timeframe)
    write_parquet_atomic(table, path)
    return FeatureTable(series_id(symbol, timeframe), len(table), path)


def read_features(settings: Settings, symbol: str, timeframe: str) -> pd.DataFrame:
    """The stored offline features of one series (empty frame when not built)."""
    path = feature_path(settings, symbol, timeframe)
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()
