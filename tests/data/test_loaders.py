"""The loader reads the layouts people actually have, into identical canonical bars."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import market_file
from tradeloop.bars.importer import import_file
from tradeloop.bars.loaders import load_bars, names_from_filename
from tradeloop.bars.store import BarStore


@pytest.fixture(scope="module")
def eth() -> pd.DataFrame:
    """The first 500 real ETHUSDT 1h bars, as the reference every layout must reproduce."""
    return pd.read_csv(market_file("ETHUSDT_1h.csv"), nrows=500)


def _stored(settings, path, **kw) -> pd.DataFrame:
    (report,) = import_file(path, settings, **kw)
    assert report.quarantined == {}
    return BarStore(settings).read(report.symbol, report.timeframe)


def _reference(settings, tmp_path, eth) -> pd.DataFrame:
    path = tmp_path / "ref" / "ETHUSDT_1h.csv"
    path.parent.mkdir()
    eth.to_csv(path, index=False)
    return _stored(settings, path)


LAYOUTS = {
    "newest_first": lambda df: df.iloc[::-1],
    "upper_case_columns": lambda df: df.rename(columns=str.upper),
    "epoch_ms_with_extra_columns": lambda df: df.assign(
        date=pd.to_datetime(df["date"]).astype("int64") // 10**6, quote_volume=1.0, trades=7
    ),
    "iso_with_offset_suffix": lambda df: df.assign(
        date=pd.to_datetime(df["date"]).dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_csv_layouts_load_to_the_same_bars(layout, settings, tmp_path, eth) -> None:
    reference = _reference(settings, tmp_path, eth)
    other = Settings_for(tmp_path, layout)
    path = tmp_path / layout / "ETHUSDT_1h.csv"
    path.parent.mkdir()
    LAYOUTS[layout](eth.copy()).to_csv(path, index=False)
    pd.testing.assert_frame_equal(_stored(other, path), reference)


def Settings_for(tmp_path, name):
    from tradeloop.config import Settings

    return Settings.load(tmp_path / f"home-{name}")


def test_banner_lines_and_semicolons(settings, tmp_path, eth) -> None:
    reference = _reference(settings, tmp_path, eth)
    path = tmp_path / "ETHUSDT_1h.csv"
    body = eth.to_csv(index=False, sep=";")
    path.write_text("Exported from ExampleExchange\nAll times UTC\n\n" + body)
    pd.testing.assert_frame_equal(_stored(Settings_for(tmp_path, "banner"), path), reference)


def test_headerless_binance_kline_export(settings, tmp_path, eth) -> None:
    reference = _reference(settings, tmp_path, eth)
    open_ms = pd.to_datetime(eth["date"]).astype("int64") // 10**6
    kline = pd.DataFrame(
        {
            "open_time": open_ms,
            "open": eth["open"],
            "high": eth["high"],
            "low": eth["low"],
            "close": eth["close"],
            "volume": eth["volume"],
            "close_time": open_ms + 3_599_999,
            "quote": 1.0,
            "trades": 10,
            "tb": 0.5,
            "tq": 0.5,
            "ignore": 0,
        }
    )
    path = tmp_path / "ETHUSDT-1h-2021-04.csv"
    kline.to_csv(path, index=False, header=False)
    pd.testing.assert_frame_equal(_stored(Settings_for(tmp_path, "kline"), path), reference)


def test_parquet_with_datetime_index(settings, tmp_path, eth) -> None:
    reference = _reference(settings, tmp_path, eth)
    frame = eth.assign(date=pd.to_datetime(eth["date"])).set_index("date")
    path = tmp_path / "ETHUSDT_1h.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(_stored(Settings_for(tmp_path, "parquet"), path), reference)


def test_unnamed_index_column_and_adj_close_are_understood() -> None:
    goog = load_bars(market_file("GOOG_1d.csv")).frame
    assert goog["ts"].iloc[0] == pd.Timestamp("2004-08-19", tz="UTC")
    aapl = load_bars(market_file("AAPL_1d.csv")).frame
    assert set(aapl["symbol"]) == {"AAPL"}
    raw = pd.read_csv(market_file("AAPL_1d.csv"))
    assert (aapl["close"].to_numpy() == raw["Close"].to_numpy()).all(), "Close, not Adj Close"


def test_a_file_with_several_symbols_yields_one_series_each(settings, tmp_path) -> None:
    both = pd.concat([pd.read_csv(market_file("AAPL_1d.csv")), pd.read_csv(market_file("MSFT_1d.csv"))])
    path = tmp_path / "sp500_sample.csv"
    both.to_csv(path, index=False)
    reports = import_file(path, settings)
    assert [(r.symbol, r.timeframe, r.stored) for r in reports] == [
        ("AAPL", "1d", 1260),
        ("MSFT", "1d", 1260),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("EURUSD_1h.csv", ("EURUSD", "1h")),
        ("BTC_USDT_1h.csv", ("BTC_USDT", "1h")),  # a symbol with an underscore
        ("BTCUSDT-1m-2024-01.csv", ("BTCUSDT", "1m")),  # Binance public data
        ("EURUSD_1h_part01.csv", ("EURUSD", "1h")),
        ("ES_F_15m_20230301_20230321.parquet", ("ES_F", "15m")),
        ("BRK.B_1d.csv", ("BRK.B", "1d")),
        ("prices.csv", (None, None)),
        ("BTC_USDT_7x.csv", ("BTC_USDT", None)),  # a timeframe-like token that is no timeframe
    ],
)
def test_symbol_and_timeframe_from_the_file_name(name: str, expected: tuple[str | None, str | None]) -> None:
    assert names_from_filename(Path(name)) == expected
