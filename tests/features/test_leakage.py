"""No feature or window at t depends on anything after t; labels and splits respect the horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import market_file
from tradeloop.bars.loaders import load_bars
from tradeloop.errors import InvalidInput
from tradeloop.features import spec
from tradeloop.features.batch import feature_matrix
from tradeloop.features.windows import gather_windows, sliding_windows
from tradeloop.labels import direction, forward_return
from tradeloop.splits import time_split


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_bars(market_file("BTCUSDT_1m.csv")).frame.iloc[:1500].reset_index(drop=True)


@settings(max_examples=25, deadline=None)
@given(t=st.integers(spec.WINDOW, 1400), scale=st.floats(0.5, 2.0), seed=st.integers(0, 2**16))
def test_changing_bars_after_t_changes_nothing_at_or_before_t(bars, t, scale, seed) -> None:
    rng = np.random.default_rng(seed)
    future = bars.copy()
    n_after = len(bars) - t - 1
    bump = rng.uniform(0.5, 1.5, size=(n_after, 1)) * scale
    cols = ["open", "high", "low", "close"]
    future.loc[t + 1 :, cols] = future.loc[t + 1 :, cols].to_numpy() * bump
    future.loc[t + 1 :, "volume"] = rng.uniform(0, 100, size=n_after)

    before, after = feature_matrix(bars), feature_matrix(future)
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])
    assert not np.array_equal(before[t + 1 :], after[t + 1 :], equal_nan=True), "the edit must matter"

    c = len(spec.FEATURE_NAMES)
    windows_before = sliding_windows(before[:, c:])
    windows_after = sliding_windows(after[:, c:])
    last_window_at_t = t - spec.WINDOW + 1  # row i of the view ends at bar i + W - 1
    np.testing.assert_array_equal(
        windows_before[: last_window_at_t + 1], windows_after[: last_window_at_t + 1]
    )


def test_windows_are_zero_copy_views(bars) -> None:
    channels = feature_matrix(bars)[:, len(spec.FEATURE_NAMES) :]
    view = sliding_windows(channels)
    assert view.shape == (len(bars) - spec.WINDOW + 1, spec.WINDOW, len(spec.CHANNELS))
    assert np.shares_memory(view, channels)
    np.testing.assert_array_equal(view[10], channels[10 : 10 + spec.WINDOW])


def test_label_is_the_forward_log_return() -> None:
    close = np.array([100.0, 110.0, 99.0, 99.0])
    ret = forward_return(close, horizon=1)
    np.testing.assert_allclose(ret[:3], np.log([1.1, 0.9, 1.0]))
    assert np.isnan(ret[3])
    assert direction(ret).tolist() == [1, -1, 0, 0]
    np.testing.assert_allclose(forward_return(close, horizon=2)[:2], np.log([0.99, 0.9]))


def test_time_split_purges_h_bars_before_the_cutoff_for_every_timeframe() -> None:
    hourly = pd.date_range("2024-01-01", periods=200, freq="1h", tz="UTC")
    daily = pd.date_range("2023-10-01", periods=100, freq="1D", tz="UTC")
    ts = pd.Series(hourly.append(daily))
    lengths = pd.Series([pd.Timedelta("1h")] * 200 + [pd.Timedelta("1D")] * 100)
    split = time_split(ts, lengths, test_fraction=0.3, horizon=3)
    label_end = ts + lengths * 3
    assert (label_end[split.train] < split.cutoff).all()
    assert (ts[split.test] >= split.cutoff).all()
    assert not (split.train & split.test).any()
    # Exactly the rows whose label window crosses the cutoff are purged.
    crossing = (ts < split.cutoff) & (label_end >= split.cutoff)
    np.testing.assert_array_equal(split.purged, crossing.to_numpy())
    assert crossing.sum() > 3, "daily rows within 3 days of the cutoff are purged too"


def test_gathered_windows_are_copies_of_the_sliding_views(bars) -> None:
    channels = feature_matrix(bars)[:, len(spec.FEATURE_NAMES) :]
    other = channels[::-1].copy()
    sid = np.array([0, 1, 0, 1, 0])
    row = np.array([spec.WINDOW - 1, 100, 700, spec.WINDOW + 3, len(bars) - 1])
    got = gather_windows([channels, other], sid, row, spec.WINDOW)
    for i, (s, r) in enumerate(zip(sid, row, strict=True)):
        source = (channels, other)[s]
        np.testing.assert_array_equal(got[i], sliding_windows(source)[r - spec.WINDOW + 1])
    assert not np.shares_memory(got, channels)
    with pytest.raises(InvalidInput, match="no full window"):
        gather_windows([channels], np.array([0]), np.array([spec.WINDOW - 2]), spec.WINDOW)
