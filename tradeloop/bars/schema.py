"""The canonical bar: columns, timeframes, series ids and market metadata.

A canonical bar frame has ``ts`` (bar open time, tz-aware UTC), ``symbol``, ``timeframe`` and
float64 ``open high low close volume``, sorted by ``ts``. Everything downstream relies on that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from tradeloop.errors import InvalidInput

__all__ = [
    "ASSET_CLASSES",
    "BAR_COLUMNS",
    "PRICE_COLUMNS",
    "TIMEFRAMES",
    "Timeframe",
    "infer_asset_class",
    "parse_series_id",
    "series_id",
]

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
VALUE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
BAR_COLUMNS: tuple[str, ...] = ("ts", "symbol", "timeframe", *VALUE_COLUMNS)
ASSET_CLASSES: tuple[str, ...] = ("crypto", "equity", "fx", "commodity")


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A bar length such as ``1h``; ``delta`` is its duration and ``freq`` its pandas alias."""

    name: str
    delta: pd.Timedelta
    freq: str

    @property
    def minutes(self) -> int:
        return int(self.delta / pd.Timedelta(minutes=1))

    def floor(self, ts: pd.Series | pd.DatetimeIndex) -> pd.Series | pd.DatetimeIndex:
        """Start of the period each timestamp falls in (weeks start on Monday 00:00 UTC)."""
        if self.name == "1w":
            if isinstance(ts, pd.Series):
                days = ts.dt.floor("1D")
                return days - pd.to_timedelta(days.dt.dayofweek, unit="D")
            days = ts.floor("1D")
            return days - pd.to_timedelta(days.dayofweek, unit="D")
        if isinstance(ts, pd.Series):
            return ts.dt.floor(self.freq)
        return ts.floor(self.freq)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> Timeframe:
        """The timeframe called ``name``; raises :class:`InvalidInput` naming the valid ones."""
        key = str(name).strip()
        if key not in TIMEFRAMES:
            raise InvalidInput("timeframe", f"{name!r} is not one of {', '.join(TIMEFRAMES)}")
        return TIMEFRAMES[key]

    @classmethod
    def from_delta(cls, delta: pd.Timedelta) -> Timeframe | None:
        """The timeframe whose length is exactly ``delta``, or None."""
        for tf in TIMEFRAMES.values():
            if tf.delta == delta:
                return tf
        return None


TIMEFRAMES: dict[str, Timeframe] = {
    name: Timeframe(name, pd.Timedelta(freq), freq)
    for name, freq in (
        ("1m", "1min"),
        ("5m", "5min"),
        ("15m", "15min"),
        ("30m", "30min"),
        ("1h", "1h"),
        ("4h", "4h"),
        ("1d", "1D"),
        ("1w", "7D"),
    )
}

_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9._\-^]*$")
_CRYPTO_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR")
_FIAT = {"USD", "EUR", "JPY", "GBP", "CHF", "AUD", "CAD", "NZD", "SEK", "NOK", "CNH", "HKD", "SGD"}
_METALS = {"XAU", "XAG", "XPT", "XPD"}
_CRYPTO_BASES = {"BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "DOT", "LTC", "AVAX", "TRX"}


def validate_symbol(symbol: str) -> str:
    """``symbol`` stripped and upper-cased; raises :class:`InvalidInput` when it cannot be one."""
    text = str(symbol).strip().upper()
    if not text or not _SYMBOL_RE.match(text) or ":" in text:
        raise InvalidInput("symbol", f"{symbol!r} is not a valid symbol")
    return text


def series_id(symbol: str, timeframe: str) -> str:
    """The Feast entity key ``SYMBOL:TF``."""
    return f"{symbol}:{timeframe}"


def parse_series_id(value: str) -> tuple[str, str]:
    """``(symbol, timeframe)`` from ``SYMBOL:TF``; raises :class:`InvalidInput` otherwise."""
    symbol, sep, timeframe = str(value).rpartition(":")
    if not sep or not symbol:
        raise InvalidInput("series", f"{value!r} is not SYMBOL:TIMEFRAME")
    return validate_symbol(symbol), Timeframe.parse(timeframe).name


def infer_asset_class(symbol: str) -> str:
    """Best guess of the asset class from the symbol alone; the symbols table can override it.

    Six letters of two fiat codes are FX (EURUSD), a metal against fiat is a commodity (XAUUSD),
    a known coin or a crypto quote suffix is crypto (BTCUSDT); anything else is an equity.
    """
    s = symbol.upper().replace("/", "").replace("-", "")
    if len(s) == 6 and s[:3] in _METALS and s[3:] in _FIAT:
        return "commodity"
    if len(s) == 6 and s[:3] in _FIAT and s[3:] in _FIAT:
        return "fx"
    for quote in _CRYPTO_QUOTES:
        if s.endswith(quote) and len(s) > len(quote) and (quote != "USD" or s[:-3] in _CRYPTO_BASES):
            if quote in {"USD", "EUR"} and s[: -len(quote)] not in _CRYPTO_BASES:
                continue
            return "crypto"
    if s in _CRYPTO_BASES:
        return "crypto"
    return "equity"
