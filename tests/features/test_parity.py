"""Batch and streaming features agree to 1e-5 on every bar after warm-up, on every real file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import available_market_files, market_file
from tradeloop.bars.importer import import_file
from tradeloop.bars.store import BarStore
from tradeloop.config import Settings
from tradeloop.features import spec
from tradeloop.features.batch import compute_features
from tradeloop.features.parity import TOLERANCE, relative_difference, replay, streaming_matrix
from tradeloop.features.streaming import StreamingFeatures

FILES = available_market_files()


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Settings:
    settings = Settings.load(tmp_path_factory.mktemp("home"))
    for name in FILES:
        import_file(market_file(name), settings)
    return settings


def _bars(settings: Settings, name: str) -> pd.DataFrame:
    symbol, tf = name.removesuffix(".csv").split("_")
    return BarStore(settings).read(symbol, tf)


@pytest.mark.parametrize("name", FILES)
def test_streaming_matches_batch_after_warmup(stored, name) -> None:
    bars = _bars(stored, name)
    parity = replay(bars)
    assert parity.rows == len(bars) - spec.WARMUP
    assert parity.max_rel_diff <= TOLERANCE, parity


def test_restored_state_continues_exactly(stored) -> None:
    bars = _bars(stored, "ETHUSDT_1h.csv").iloc[:3000]
    whole = streaming_matrix(bars)
    first = StreamingFeatures()
    head = streaming_matrix(bars.iloc[:1700], first)
    state = json.loads(json.dumps(first.to_state()))  # as persisted on disk
    tail = streaming_matrix(bars.iloc[1700:], StreamingFeatures.from_state(state))
    np.testing.assert_array_equal(np.vstack([head, tail]), whole)


def test_streaming_window_is_the_batch_window(stored) -> None:
    bars = _bars(stored, "SOLUSDT_1h.csv").iloc[:500]
    stream = StreamingFeatures()
    streaming_matrix(bars, stream)
    batch = compute_features(bars)[list(spec.CHANNELS)].to_numpy()
    np.testing.assert_array_equal(stream.window_array(), batch[-spec.WINDOW :])


def test_parity_check_catches_a_wrong_streaming_state(stored) -> None:
    """The parity measure is not blind: a stream that skipped one bar is far from batch."""
    bars = _bars(stored, "EURUSD_1h.csv").iloc[:1000]
    batch = compute_features(bars)[[*spec.FEATURE_NAMES, *spec.CHANNELS]].to_numpy()
    skipped = streaming_matrix(bars.drop(index=400).reset_index(drop=True))
    diff = relative_difference(batch[401:], skipped[400:])
    assert diff.max() > 1e-2


def test_relative_difference_treats_two_nans_as_equal_and_one_as_different() -> None:
    a = np.array([np.nan, np.nan, 1.0, 0.0, 1e-9])
    b = np.array([np.nan, 1.0, 1.0 + 1e-6, 0.0, 0.0])
    np.testing.assert_allclose(relative_difference(a, b), [0.0, 1.0, 1e-6, 0.0, 1e-2], rtol=1e-3)
