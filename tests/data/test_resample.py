"""Resampling emits complete bars only, with the right OHLCV aggregates."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import market_file
from tradeloop.bars.importer import import_file
from tradeloop.bars.resample import resample_bars
from tradeloop.bars.schema import Timeframe
from tradeloop.bars.store import BarStore
from tradeloop.cli.main import app
from tradeloop.errors import InvalidInput


def test_crypto_4h_bars_are_complete_and_aggregate_their_hours(settings) -> None:
    import_file(market_file("BTCUSDT_1h.csv"), settings)
    hourly = BarStore(settings).read("BTCUSDT", "1h")
    four = resample_bars(hourly, Timeframe.parse("1h"), Timeframe.parse("4h"), "crypto")
    periods = hourly.groupby(hourly["ts"].dt.floor("4h"))
    counts = periods.size()
    assert len(four) == int((counts == 4).sum())
    assert set(four["ts"]) == set(counts.index[counts == 4]), "periods with outage gaps are not emitted"
    first = hourly.iloc[:8]
    start = first["ts"].dt.floor("4h").iloc[-1]
    window = hourly[(hourly["ts"] >= start) & (hourly["ts"] < start + pd.Timedelta("4h"))]
    row = four.set_index("ts").loc[start]
    assert row["open"] == window["open"].iloc[0]
    assert row["high"] == window["high"].max()
    assert row["low"] == window["low"].min()
    assert row["close"] == window["close"].iloc[-1]
    assert row["volume"] == pytest.approx(window["volume"].sum())


def test_equity_weekly_bars_end_before_the_last_unfinished_week(settings) -> None:
    import_file(market_file("GOOG_1d.csv"), settings)
    daily = BarStore(settings).read("GOOG", "1d")
    weekly = resample_bars(daily, Timeframe.parse("1d"), Timeframe.parse("1w"), "equity")
    assert (weekly["ts"].dt.dayofweek == 0).all()
    last_week = daily["ts"].iloc[-1].floor("1D") - pd.Timedelta(days=daily["ts"].iloc[-1].dayofweek)
    assert weekly["ts"].max() < last_week


def test_resample_to_a_non_multiple_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a whole multiple"):
        resample_bars(pd.DataFrame(), Timeframe.parse("1h"), Timeframe.parse("30m"), "crypto")


def test_cli_resample_stores_bars_and_is_idempotent(tmp_path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home"), "--json"]
    assert runner.invoke(app, [*home, "data", "import", str(market_file("BTCUSDT_1m.csv"))]).exit_code == 0
    first = runner.invoke(app, [*home, "data", "resample", "--to", "15m"])
    assert first.exit_code == 0, first.output
    (result,) = json.loads(first.stdout)
    assert result["from"] == "1m"
    assert result["stored"] == result["complete_bars"] == 30240 // 15
    again = json.loads(runner.invoke(app, [*home, "data", "resample", "--to", "15m"]).stdout)
    assert (again[0]["stored"], again[0]["already_stored"]) == (0, 30240 // 15)
    listed = json.loads(runner.invoke(app, [*home, "data", "list"]).stdout)
    assert {r["series"] for r in listed} == {"BTCUSDT:1m", "BTCUSDT:15m"}


def test_fx_first_period_is_dropped_when_the_data_starts_inside_it(settings) -> None:
    import_file(market_file("EURUSD_1h.csv"), settings)
    hourly = BarStore(settings).read("EURUSD", "1h")
    assert hourly["ts"].iloc[0] == pd.Timestamp("2017-04-19 09:00", tz="UTC")
    four = resample_bars(hourly, Timeframe.parse("1h"), Timeframe.parse("4h"), "fx")
    assert four["ts"].iloc[0] == pd.Timestamp("2017-04-19 12:00", tz="UTC")
    last = hourly["ts"].iloc[-1].floor("4h")
    assert four["ts"].iloc[-1] < last


def test_cli_resample_from_a_coarser_timeframe_is_a_clear_error(tmp_path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    assert runner.invoke(app, [*home, "data", "import", str(market_file("GOOG_1d.csv"))]).exit_code == 0
    result = runner.invoke(app, [*home, "data", "resample", "--to", "4h", "--from", "1d"])
    assert result.exit_code == 2
    assert "not a whole multiple" in result.output
    nothing = runner.invoke(app, [*home, "data", "resample", "--to", "1w", "--symbol", "NOPE"])
    assert nothing.exit_code == 2
    assert "no stored series can be resampled to 1w" in nothing.output
