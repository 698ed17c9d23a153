"""Read bar files in the layouts people actually have, into one raw canonical frame.

Accepted: CSV (any delimiter, banner lines above the header, headerless Binance kline exports)
and Parquet (a timestamp index or column). Column names in any casing; the timestamp may be an
unnamed index column, epoch seconds/ms/µs/ns or ISO strings with or without ``+00:00``; extra
columns (``Adj Close``, ``Name``, ``ticker``) are ignored or used for the symbol.

The loader never drops a row: unparsable values become NaN/NaT and validation quarantines them
with a reason. A file that cannot be read as bars at all raises :class:`UnusableFile`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tradeloop.bars.schema import TIMEFRAMES, VALUE_COLUMNS
from tradeloop.errors import UnusableFile

__all__ = [
    "COLUMN_ALIASES",
    "SYMBOL_ALIASES",
    "TIMEFRAME_ALIASES",
    "TS_ALIASES",
    "RawBars",
    "day_first",
    "load_bars",
    "names_from_filename",
    "norm",
    "parse_timestamp",
    "parse_timestamps",
]

TS_ALIASES = (
    "ts",
    "timestamp",
    "open_time",
    "opentime",
    "open time",
    "datetime",
    "date_time",
    "date",
    "time",
    "unnamed: 0",
    "index",
    "",
)
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open", "o", "open_price", "opening_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price", "closing_price", "last"),
    "volume": ("volume", "vol", "v", "base_volume", "volume_base", "tick_volume", "tickvol"),
}
SYMBOL_ALIASES = ("symbol", "ticker", "name", "pair", "instrument")
TIMEFRAME_ALIASES = ("timeframe", "interval", "tf")
_BINANCE_KLINE = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_base",
    "taker_quote",
    "ignore",
)
# SYMBOL_TF, SYMBOL-TF-2024-01 (Binance public data), SYMBOL_TF_20230301_20230321, BTC_USDT_1h ...:
# the symbol is everything before the first separator followed by a timeframe-like token.
_FILENAME_RE = re.compile(r"^(?P<symbol>[A-Za-z0-9][A-Za-z0-9.^_]*?)[_-](?P<tf>\d+[a-zA-Z])(?:[_-].*)?$")
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawBars:
    """Bars as read, before validation: ``row`` is the 1-based data row in the source file."""

    source: str
    frame: pd.DataFrame  # row, ts, symbol (or None), timeframe (or None), open..volume


def names_from_filename(path: Path) -> tuple[str | None, str | None]:
    """``(symbol, timeframe)`` from a ``SYMBOL_TIMEFRAME.ext`` file name; None where absent."""
    match = _FILENAME_RE.match(path.stem)
    if not match:
        return None, None
    tf = match["tf"].lower()
    return match["symbol"].upper(), tf if tf in TIMEFRAMES else None


def load_bars(path: str | Path) -> RawBars:
    """Read ``path`` (CSV or Parquet, decided by content) into a raw canonical frame."""
    path = Path(path)
    source = str(path)
    try:
        head = path.read_bytes()[:_SNIFF_BYTES]
    except OSError as exc:
        raise UnusableFile(source, f"unreadable: {exc.strerror or exc}") from exc
    if not head.strip():
        raise UnusableFile(source, "empty file: no bars")
    if head.startswith(b"PAR1"):
        table = _read_parquet(path)
    elif b"\x00" in head:
        raise UnusableFile(source, "unreadable: binary data that is neither CSV nor Parquet")
    else:
        table = _read_csv(path)
    if table.empty:
        raise UnusableFile(source, "empty file: header but no bars")
    return RawBars(source, _canonicalise(table, source))


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise UnusableFile(str(path), f"unreadable Parquet: {exc}") from exc
    if isinstance(table.index, pd.DatetimeIndex) or table.index.name:
        table = table.reset_index()
    return table


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except UnicodeDecodeError as exc:
        raise UnusableFile(str(path), "unreadable: not UTF-8 text") from exc
    lines = text.splitlines()
    delimiter = _sniff_delimiter("\n".join(lines[:50]))
    header_at = _find_header(lines[:200], delimiter)
    try:
        if header_at is None:
            if not _looks_like_kline(lines, delimiter):
                raise UnusableFile(str(path), "no OHLCV columns: no header names open/high/low/close")
            table = pd.read_csv(io.StringIO(text), sep=delimiter, header=None)
            table.columns = list(_BINANCE_KLINE[: table.shape[1]]) + [
                f"extra_{i}" for i in range(max(0, table.shape[1] - len(_BINANCE_KLINE)))
            ]
            return table
        return pd.read_csv(io.StringIO(text), sep=delimiter, skiprows=header_at, skipinitialspace=True)
    except UnusableFile:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise UnusableFile(str(path), f"unreadable CSV: {exc}") from exc


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _find_header(lines: list[str], delimiter: str) -> int | None:
    """Index of the first line naming at least open, high, low and close (banners skipped)."""
    wanted = {name: set(aliases) for name, aliases in COLUMN_ALIASES.items() if name != "volume"}
    for i, line in enumerate(lines):
        cells = {norm(c) for c in line.split(delimiter)}
        if all(cells & aliases for aliases in wanted.values()):
            return i
    return None


def _looks_like_kline(lines: list[str], delimiter: str) -> bool:
    """True for a headerless Binance kline export: numeric rows led by an epoch in ms."""
    first = next((ln for ln in lines if ln.strip()), "")
    cells = first.split(delimiter)
    if len(cells) < 6:
        return False
    try:
        values = [float(c) for c in cells[:6]]
    except ValueError:
        return False
    return values[0] > 1e11


def norm(name: object) -> str:
    return str(name).strip().strip('"').strip().lower().replace("-", "_")


def _canonicalise(table: pd.DataFrame, source: str) -> pd.DataFrame:
    columns = {norm(c): c for c in table.columns}
    picked: dict[str, object] = {}
    for name, aliases in COLUMN_ALIASES.items():
        found = next((columns[a] for a in aliases if a in columns), None)
        if found is None and name == "volume":
            raise UnusableFile(source, "no OHLCV columns: no volume column")
        if found is None:
            raise UnusableFile(source, f"no OHLCV columns: no {name} column")
        picked[name] = found
    ts_col = next((columns[a] for a in TS_ALIASES if a in columns), None)
    if ts_col is None:
        raise UnusableFile(source, "no timestamp column (looked for ts, timestamp, date, time…)")
    out = pd.DataFrame({"row": np.arange(1, len(table) + 1, dtype=np.int64)})
    out["ts"] = parse_timestamps(table[ts_col], source, str(ts_col) or "(unnamed first column)")
    sym_col = next((columns[a] for a in SYMBOL_ALIASES if a in columns), None)
    out["symbol"] = table[sym_col].astype("string").str.strip().str.upper().values if sym_col else None
    tf_col = next((columns[a] for a in TIMEFRAME_ALIASES if a in columns), None)
    out["timeframe"] = table[tf_col].astype("string").str.strip().values if tf_col else None
    for name in VALUE_COLUMNS:
        out[name] = pd.to_numeric(table[picked[name]], errors="coerce").astype("float64").values
    if out[list(VALUE_COLUMNS)].isna().all(axis=None):
        raise UnusableFile(source, "no OHLCV columns: no numeric open/high/low/close/volume values")
    return out


_NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})\b")
_YYYYMMDD = re.compile(r"^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")


def day_first(text: pd.Series, column: str, source: str) -> bool:
    """Whether ``a/b/yyyy`` dates in ``text`` put the day first, decided from the values.

    A first field above 12 proves day-first, a second field above 12 proves month-first. When
    every value reads both ways as two different dates the order cannot be known, and guessing
    would shift bars by months: :class:`UnusableFile` says so, naming the column and a value.
    """
    parts = text.str.extract(_NUMERIC_DATE).dropna().astype(int)
    if parts.empty:
        return False
    first, second = parts[0], parts[1]
    if (first > 12).any() and (second > 12).any():
        raise UnusableFile(
            source, f"column {column!r}: dates put a value above 12 in both the day and month places"
        )
    if (first > 12).any():
        return True
    if (second > 12).any() or (first == second).all():
        return False
    at = parts.index[(first != second).to_numpy()][0]
    a, b = int(first[at]), int(second[at])
    raise UnusableFile(
        source,
        f"column {column!r}: ambiguous date order: {str(text[at])!r} could be day {a} of month {b} "
        f"or day {b} of month {a}, and no value settles it; write ISO dates (YYYY-MM-DD)",
    )


def parse_timestamps(values: pd.Series, source: str, column: str = "ts") -> pd.Series:
    """UTC timestamps from epoch numbers (s/ms/µs/ns by magnitude), ``YYYYMMDD`` or date text.

    Text is parsed by inference (ISO first, then pandas/dateutil's mixed parser: 12-hour clocks
    with AM/PM, month names, ``02.01.2023 13:00``); numeric day/month order is decided from the
    data by :func:`day_first`, never guessed. Both ``data import`` and ``tradeloop ingest`` read
    timestamps here.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    elif pd.api.types.is_numeric_dtype(values):
        parsed = _parse_number(values, source)
    else:
        text = values.astype("string").str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        if numeric.notna().mean() > 0.9:
            parsed = _parse_number(numeric, source)
        else:
            parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            if parsed.notna().mean() < 0.5:
                first = day_first(text.dropna(), column, source)
                parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed", dayfirst=first)
    present = values.notna()
    if present.any() and parsed[present].notna().mean() < 0.5:
        sample = str(values[present].iloc[0])
        raise UnusableFile(source, f"column {column!r}: unknown timestamp format (first value {sample!r})")
    return parsed.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").reset_index(drop=True)


def _parse_number(values: pd.Series, source: str) -> pd.Series:
    """``YYYYMMDD`` integers as dates, anything else as an epoch."""
    finite = values.dropna()
    if len(finite) and (finite == finite.round()).all():
        digits = finite.astype("int64").astype(str)
        if digits.str.fullmatch(_YYYYMMDD).all():
            text = values.astype("Int64").astype("string")
            return pd.to_datetime(text, format="%Y%m%d", utc=True, errors="coerce")
    return _parse_epoch(values.astype("float64"), source)


def _epoch_unit(magnitude: float, source: str) -> str:
    """The epoch unit (s, ms, µs, ns) a number of this size is in."""
    for unit, low in (("ns", 1e17), ("us", 1e14), ("ms", 1e11), ("s", 1e8)):
        if magnitude >= low:
            return unit
    raise UnusableFile(source, f"unknown timestamp format (number {magnitude:g} is not an epoch)")


def _parse_epoch(values: pd.Series, source: str) -> pd.Series:
    magnitude = float(np.nanmedian(np.abs(values.to_numpy()))) if values.notna().any() else 0.0
    return pd.to_datetime(values, unit=_epoch_unit(magnitude, source), utc=True, errors="coerce")


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_EPOCH_TEXT = re.compile(r"^\d{9,19}$")  # an 8-digit number may be YYYYMMDD: the column path decides


def parse_timestamp(value: object, source: str, column: str = "ts") -> pd.Timestamp:
    """One value, read as :func:`parse_timestamps` reads a column holding only it.

    A live feed sends one bar per line, almost always an ISO time or an epoch number: those
    unambiguous forms are read directly (about 100× faster than building a one-row column);
    every other form goes through the column parser, so the rules stay in one place.
    """
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        ts = pd.Timestamp(value.strip())
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if isinstance(value, str) and _EPOCH_TEXT.match(value.strip()):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1e8:
        return pd.Timestamp(value, unit=_epoch_unit(abs(value), source), tz="UTC")
    return parse_timestamps(pd.Series([value]), source, column).iloc[0]
