"""Reference values for the feature-store tests: batch features of the full real series."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.conftest import market_file
from tests.feature_store.conftest import SYMBOL, TIMEFRAME
from tradeloop.bars.loaders import load_bars
from tradeloop.bars.schema import TIMEFRAMES
from tradeloop.bars.validate import validate_bars
from tradeloop.feature_store import OnlineRow
from tradeloop.features import spec
from tradeloop.features.batch import compute_features
from tradeloop.features.parity import relative_difference

NAMES = [*spec.FEATURE_NAMES]


def batch_features() -> pd.DataFrame:
    """Batch features of every bar of the whole real file (the parity reference)."""
    raw = load_bars(market_file(f"{SYMBOL}_{TIMEFRAME}.csv")).frame
    clean = validate_bars(raw.assign(symbol=SYMBOL, timeframe=TIMEFRAME), TIMEFRAMES[TIMEFRAME]).clean
    return compute_features(clean).reset_index(drop=True)


def online_vs_batch(row: OnlineRow, batch: pd.DataFrame) -> float:
    """Largest relative difference between an online row and the batch row of the same bar."""
    i = int(np.flatnonzero(batch["ts"] == pd.Timestamp(row.event_ts))[0])
    feats = relative_difference(
        np.array([row.values[n] for n in NAMES], dtype=np.float64), batch.loc[i, NAMES].to_numpy(np.float64)
    ).max()
    channels = batch[list(spec.CHANNELS)].to_numpy(np.float32)[i - spec.WINDOW + 1 : i + 1].reshape(-1)
    assert row.window is not None
    return float(max(feats, relative_difference(row.window, channels).max()))
