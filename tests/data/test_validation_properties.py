"""Property tests: each corruption is quarantined with its reason; no valid bar is lost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import market_file
from tradeloop.bars.importer import import_file
from tradeloop.bars.store import BarStore, QuarantineStore
from tradeloop.config import Settings
from tradeloop.features.batch import compute_features

N_BARS = 300


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    """A slice of real BTCUSDT 1h bars (all valid), with a real zero-volume bar nowhere near."""
    frame = pd.read_csv(market_file("BTCUSDT_1h.csv"), nrows=N_BARS)
    return frame.drop(columns="ticker")


def _corrupt(frame: pd.DataFrame, kind: str, i: int, j: int) -> tuple[pd.DataFrame, str]:
    """``frame`` with bar ``i`` corrupted as ``kind``; returns the frame and the expected reason."""
    out = frame.copy()
    if kind == "swap_high_low":
        out.loc[i, ["high", "low"]] = out.loc[i, ["low", "high"]].to_numpy()
        return out, "ohlc_inconsistent"
    if kind == "negative_volume":
        out.loc[i, "volume"] = -abs(out.loc[i, "volume"]) - 1.0
        return out, "negative_volume"
    if kind == "nan":
        out.loc[i, ["open", "high", "low", "close", "volume"][j % 5]] = np.nan
        return out, "nan"
    if kind == "non_positive_price":
        out.loc[i, ["open", "high", "low", "close"][j % 4]] = -(j % 3) * 1.5
        return out, "non_positive_price"
    if kind == "off_grid":
        ts = pd.Timestamp(out.loc[i, "date"]) + pd.Timedelta(minutes=1 + j % 58)
        out.loc[i, "date"] = ts.strftime("%Y-%m-%d %H:%M:%S")
        return out, "off_grid"
    if kind == "conflicting_duplicate":
        copy = out.loc[[i]].copy()
        copy["close"] = copy["close"] * (1.0 + 1e-4 * (1 + j % 50))
        copy["high"] = np.maximum(copy["high"], copy["close"])
        at = i + 1 + j % (len(out) - i)  # a restatement later in the file
        return pd.concat([out.iloc[:at], copy, out.iloc[at:]], ignore_index=True), "conflicting_duplicate"
    if kind == "moved":
        row = out.loc[[i]]
        rest = out.drop(index=i).reset_index(drop=True)
        at = (i + 2 + j) % len(rest)  # somewhere it does not belong
        if abs(at - i) < 2:
            at = (at + 5) % len(rest)
        return pd.concat([rest.iloc[:at], row, rest.iloc[at:]], ignore_index=True), "unsorted"
    raise AssertionError(kind)


KINDS = [
    "swap_high_low",
    "negative_volume",
    "nan",
    "non_positive_price",
    "off_grid",
    "conflicting_duplicate",
    "moved",
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), i=st.integers(1, N_BARS - 2), j=st.integers(0, 10_000))
def test_corruption_is_quarantined_with_its_reason(clean, tmp_path_factory, kind, i, j) -> None:
    if kind == "swap_high_low" and clean.loc[i, "high"] == clean.loc[i, "low"]:
        i += 1
    corrupted, reason = _corrupt(clean, kind, i, j)
    home = Settings.load(tmp_path_factory.mktemp("home"))
    path = home.home.parent / "BTCUSDT_1h.csv"
    corrupted.to_csv(path, index=False)
    (report,) = import_file(path, home)

    assert report.quarantined == {reason: 1}
    quarantined = QuarantineStore(home).read()
    assert list(quarantined["reason"]) == [reason]
    stored = BarStore(home).read("BTCUSDT", "1h")
    # No valid bar is lost: every untouched bar is stored exactly as it was.
    original = clean.assign(ts=pd.to_datetime(clean["date"], utc=True)).drop(columns="date")
    if kind in {"conflicting_duplicate", "moved"}:
        expected = original  # the restatement / the moved copy is the only thing held back
        if kind == "moved":
            expected = original.drop(index=i)
    else:
        expected = original.drop(index=i)
    assert len(stored) == len(expected)
    cols = ["ts", "open", "high", "low", "close", "volume"]
    np.testing.assert_array_equal(stored[cols[1:]].to_numpy(), expected[cols[1:]].to_numpy())
    assert (stored["ts"].to_numpy() == expected["ts"].to_numpy()).all()
    # ... and the corrupted values never reach features.
    features = compute_features(stored)
    assert len(features) == len(stored)
    assert np.isfinite(features.iloc[30:].drop(columns="ts").to_numpy()).all()


def test_exact_duplicates_are_removed_counted_and_kept_in_quarantine(clean, settings, tmp_path) -> None:
    doubled = pd.concat([clean, clean.iloc[10:15]], ignore_index=True)
    path = tmp_path / "BTCUSDT_1h.csv"
    doubled.to_csv(path, index=False)
    (report,) = import_file(path, settings)
    assert report.stored == N_BARS
    assert report.duplicates_removed == 5
    assert report.quarantined == {"duplicate_ts": 5}
    assert report.rows_read == report.stored + sum(report.quarantined.values())


def test_price_spike_is_quarantined_but_real_crash_is_not(settings, tmp_path) -> None:
    frame = pd.read_csv(market_file("BTCUSDT_1h.csv")).drop(columns="ticker")
    crash = frame.index[frame["date"].str.startswith("2021-05-19")]
    spiked = frame.copy()
    k = int(crash[0]) - 100
    spiked.loc[k, ["open", "high", "low", "close"]] = spiked.loc[k, ["open", "high", "low", "close"]] * 10
    path = tmp_path / "BTCUSDT_1h.csv"
    spiked.to_csv(path, index=False)
    (report,) = import_file(path, settings)
    assert report.quarantined == {"price_spike": 1}
    assert report.stored == len(frame) - 1
