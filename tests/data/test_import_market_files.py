"""Importing the real files in ../shared/data/market reproduces the facts its README states."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import market_file
from tradeloop.bars.importer import import_file
from tradeloop.bars.store import BarStore, QuarantineStore

# file: (rows, gaps, missing bars, longest gap in bars, zero-volume bars), from the data README.
# "5 gaps / 12 missing bars (max 5h)": a 5h spacing between bars is 4 missing 1h bars.
README_FACTS = {
    "BTCUSDT_1h.csv": (23988, 5, 12, 4, 1),
    "ETHUSDT_1h.csv": (23989, 5, 12, 4, 1),
    "SOLUSDT_1h.csv": (23988, 5, 12, 4, 1),
    "BNBUSDT_1h.csv": (23988, 5, 12, 4, 1),
    "BTCUSDT_1m.csv": (30240, 0, 0, 0, 658),  # "21 days with no missing minutes"
    # Trading days only: with the NYSE calendar nothing is missing in 2012-2017 ...
    "AAPL_1d.csv": (1260, 0, 0, 0, 0),
    "MSFT_1d.csv": (1260, 0, 0, 0, 0),
    "AMZN_1d.csv": (1260, 0, 0, 0, 0),
    # ... and GOOG 2004-2013 misses only the special closures: 2007-01-02 (Ford) and
    # 2012-10-29/30 (Hurricane Sandy).
    "GOOG_1d.csv": (2148, 2, 3, 2, 0),
}


@pytest.mark.parametrize("name", sorted(README_FACTS))
def test_report_matches_readme_facts(name: str, settings) -> None:
    rows, gaps, missing, longest, zero_volume = README_FACTS[name]
    (report,) = import_file(market_file(name), settings)
    assert report.rows_read == rows
    assert report.stored == rows, "the README lists no invalid bar in any file"
    assert report.quarantined == {}
    assert (report.gaps, report.missing_bars, report.longest_gap_bars) == (gaps, missing, longest)
    assert report.zero_volume == zero_volume


def test_fx_weekends_are_not_gaps_but_holiday_closures_are(settings) -> None:
    (report,) = import_file(market_file("EURUSD_1h.csv"), settings)
    assert report.asset_class == "fx"
    assert report.stored == 5000
    # 40 weekend closures are not gaps; Christmas 2017 and New Year 2018 (a Monday each) are.
    assert (report.gaps, report.longest_gap_bars) == (2, 23)


def test_symbol_and_timeframe_come_from_the_file_name_and_the_spacing(settings, tmp_path) -> None:
    (named,) = import_file(market_file("GOOG_1d.csv"), settings)
    assert (named.symbol, named.timeframe) == ("GOOG", "1d")
    unnamed = tmp_path / "prices.csv"
    unnamed.write_bytes(market_file("EURUSD_1h.csv").read_bytes())
    (inferred,) = import_file(unnamed, settings, symbol="eurusd")
    assert (inferred.symbol, inferred.timeframe) == ("EURUSD", "1h")


def test_second_import_of_the_same_file_stores_nothing_new(settings) -> None:
    path = market_file("AAPL_1d.csv")
    (first,) = import_file(path, settings)
    (second,) = import_file(path, settings)
    assert first.stored == 1260
    assert (second.stored, second.already_stored) == (0, 1260)
    assert len(BarStore(settings).read("AAPL", "1d")) == 1260
    assert len(QuarantineStore(settings).read()) == 0


def test_overlapping_newer_file_appends_only_the_new_bars(settings, tmp_path) -> None:
    frame = pd.read_csv(market_file("MSFT_1d.csv"))
    old, new = tmp_path / "old" / "MSFT_1d.csv", tmp_path / "new" / "MSFT_1d.csv"
    old.parent.mkdir()
    new.parent.mkdir()
    frame.iloc[:800].to_csv(old, index=False)
    frame.iloc[600:].to_csv(new, index=False)
    import_file(old, settings)
    (report,) = import_file(new, settings)
    assert (report.stored, report.already_stored) == (1260 - 800, 200)
    stored = BarStore(settings).read("MSFT", "1d")
    assert len(stored) == 1260
    assert stored["ts"].is_monotonic_increasing
    assert stored["ts"].is_unique


def test_restated_bar_is_quarantined_and_never_overwrites(settings, tmp_path) -> None:
    frame = pd.read_csv(market_file("AMZN_1d.csv"))
    import_file(market_file("AMZN_1d.csv"), settings)
    restated = frame.copy()
    restated.loc[100, "Volume"] = restated.loc[100, "Volume"] + 1000
    path = tmp_path / "AMZN_1d.csv"
    restated.to_csv(path, index=False)
    (report,) = import_file(path, settings)
    assert report.stored == 0
    assert report.quarantined == {"conflicting_duplicate": 1}
    stored = BarStore(settings).read("AMZN", "1d")
    assert stored.loc[100, "volume"] == frame.loc[100, "Volume"]
    quarantined = QuarantineStore(settings).read()
    assert list(quarantined["reason"]) == ["conflicting_duplicate"]
    assert quarantined["volume"].iloc[0] == restated.loc[100, "Volume"]
