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
from tradeloop.labels import direction, forward_return, make_labels
from tradeloop.splits import label_end_times, time_split


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


def test_label_end_is_the_close_of_bar_t_plus_h_counted_in_rows_across_a_weekend() -> None:
    # NYSE daily bars Wed 2024-01-03 .. Tue 2024-01-09 (no weekend rows). With h = 3 the label of
    # Thursday 01-04 runs to the close of the third *stored* bar after it: Fri, Mon, Tue 01-09,
    # whose close is 01-10 00:00 (a daily bar is one day long). Nominal time (t + 3 days) would
    # say Sunday 01-07 and cut two trading days too early.
    days = pd.to_datetime(["2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"], utc=True)
    bars = pd.DataFrame({"ts": days, "timeframe": "1d", "close": [10.0, 11.0, 12.0, 13.0, 14.0]})
    labels = make_labels(bars, horizon=3)
    assert labels["label_end"].iloc[0] == pd.Timestamp("2024-01-09", tz="UTC")  # Wed → close of Mon
    assert labels["label_end"].iloc[1] == pd.Timestamp("2024-01-10", tz="UTC")  # Thu → close of Tue
    assert labels["label_end"].iloc[2:].isna().all()
    np.testing.assert_allclose(labels["fwd_return"].iloc[:2], np.log([13.0 / 10.0, 14.0 / 11.0]))


def test_a_row_trains_only_when_its_label_has_closed_by_the_cut_with_mixed_timeframes() -> None:
    # Hand example, cut at 12:00: a 1h row at 10:00 with h = 1 has its label end at the close of
    # the 11:00 bar = 12:00 → trains (ends exactly at the cut); the 1h row at 11:00 ends 13:00 →
    # purged. A 1m row at 11:58 ends at the close of 11:59 = 12:00 → trains;
    # at 11:59 it ends 12:01 → purged. Rows opening at or after 12:00 are test rows.
    hourly = pd.date_range("2024-01-01 08:00", periods=8, freq="1h", tz="UTC")  # 08:00 .. 15:00
    minute = pd.date_range("2024-01-01 11:55", periods=10, freq="1min", tz="UTC")  # 11:55 .. 12:04
    ts = pd.Series(hourly.append(minute))
    ends = np.concatenate(
        [label_end_times(hourly, 1, pd.Timedelta("1h")), label_end_times(minute, 1, pd.Timedelta("1min"))]
    )
    split = time_split(ts, ends, cutoff=pd.Timestamp("2024-01-01 12:00", tz="UTC"))
    train_times = sorted(ts[split.train].dt.strftime("%H:%M"))
    assert train_times == ["08:00", "09:00", "10:00", "11:55", "11:56", "11:57", "11:58"]
    test_times = sorted(ts[split.test].dt.strftime("%H:%M"))
    assert test_times == ["12:00", "12:00", "12:01", "12:02", "12:03", "12:04", "13:00", "14:00", "15:00"]
    assert sorted(ts[split.purged].dt.strftime("%H:%M")) == ["11:00", "11:59"]


def test_no_hourly_training_label_overlaps_a_minute_test_label_on_real_btc() -> None:
    # BTCUSDT 1h and 1m of the same weeks: every cut must leave no 1h training label that ends
    # after the first 1m test bar opens (the defect: 1h labels overlapping 9–50 1m test labels).
    frames = {}
    for tf in ("1h", "1m"):
        raw = load_bars(market_file(f"BTCUSDT_{tf}.csv")).frame
        raw = raw[(raw["ts"] >= "2023-03-01") & (raw["ts"] < "2023-03-22")].reset_index(drop=True)
        frames[tf] = raw.assign(timeframe=tf)
    rows = [make_labels(frames[tf], horizon=1).dropna() for tf in ("1h", "1m")]
    ts = pd.concat([r["ts"] for r in rows], ignore_index=True)
    ends = pd.concat([r["label_end"] for r in rows], ignore_index=True)
    for q in (0.3, 0.5, 0.7):
        split = time_split(ts, ends, test_fraction=1 - q)
        hour_train = split.train[: len(rows[0])]
        minute_test = split.test[len(rows[0]) :]
        assert hour_train.any()
        assert minute_test.any()
        last_hour_label = ends[: len(rows[0])][hour_train].max()
        minute_test_opens = ts[len(rows[0]) :][minute_test]
        overlapping = int((minute_test_opens < last_hour_label).sum())
        assert overlapping == 0, f"cut {split.cutoff}: {overlapping} 1m test bars inside a 1h training label"


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
