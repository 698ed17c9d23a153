"""Line-by-line parsing of live bars (JSON lines or CSV) into bars or per-line errors.

Parsing never raises for one bad line: a line that is not JSON/CSV, lacks a field or carries an
unusable symbol, timeframe, timestamp or number becomes a :class:`ParsedBar` with ``error`` set
(``malformed`` or ``missing_field``), so the bars around it still land. NaN values parse as NaN
and are rejected by validation with the foundation's ``nan`` code.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pandas as pd

from tradeloop.bars.schema import VALUE_COLUMNS, Timeframe, validate_symbol
from tradeloop.errors import InvalidInput

__all__ = ["MALFORMED", "MISSING_FIELD", "ParsedBar", "parse_lines"]

MALFORMED = "malformed"
MISSING_FIELD = "missing_field"
_TS_KEYS = ("ts", "timestamp", "open_time", "time", "date")


@dataclass(frozen=True, slots=True)
class ParsedBar:
    """One input line; ``error`` is (reason, detail) when the line is not a usable bar.

    ``idle`` marks the last line the input had ready, so a live feed is pushed without waiting
    for a full batch.
    """

    line: int
    text: str
    symbol: str | None = None
    timeframe: str | None = None
    ts: pd.Timestamp | None = None
    values: tuple[float, ...] = ()
    error: tuple[str, str] | None = None
    idle: bool = False


def _number(value: object, name: str) -> float:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "nan", "null"}):
        return math.nan
    if isinstance(value, bool):
        raise ValueError(f"{name} is a boolean")
    return float(value)  # raises ValueError on text


def _timestamp(value: object) -> pd.Timestamp:
    if isinstance(value, int | float) and not isinstance(value, bool):
        unit = "ms" if abs(value) >= 1e11 else "s"
        ts = pd.Timestamp(value, unit=unit, tz="UTC")
    else:
        ts = pd.Timestamp(str(value))
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if pd.isna(ts):
        raise ValueError("empty timestamp")
    return ts


def _bar(
    line: int, text: str, record: dict[str, object], symbol: str | None, timeframe: str | None
) -> ParsedBar:
    keys = {str(k).strip().lower(): v for k, v in record.items()}
    ts_key = next((k for k in _TS_KEYS if k in keys), None)
    sym = keys.get("symbol", symbol)
    tf = keys.get("timeframe", timeframe)
    missing = [
        name
        for name, present in (("ts", ts_key), ("symbol", sym), ("timeframe", tf))
        if present in (None, "")
    ] + [k for k in VALUE_COLUMNS if k not in keys]
    if missing:
        return ParsedBar(line, text, error=(MISSING_FIELD, f"missing {', '.join(missing)}"))
    try:
        sym_ok = validate_symbol(str(sym))
        tf_ok = Timeframe.parse(str(tf)).name
        ts = _timestamp(keys[ts_key])  # type: ignore[index]
        values = tuple(_number(keys[k], k) for k in VALUE_COLUMNS)
    except (InvalidInput, ValueError, TypeError, OverflowError) as exc:
        return ParsedBar(line, text, symbol=str(sym), timeframe=str(tf), error=(MALFORMED, str(exc)))
    return ParsedBar(line, text, sym_ok, tf_ok, ts, values)


def parse_lines(
    lines: Iterable[str],
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    more_ready: Callable[[], bool] | None = None,
) -> Iterator[ParsedBar]:
    """Bars from JSON lines (``{"ts":…, "symbol":…, "open":…}``) or CSV with a header row.

    The format is decided by the first non-blank line: ``{`` means JSON lines, anything else is
    the CSV header. ``symbol``/``timeframe`` fill in for lines that do not carry them. Line
    numbers are 1-based positions in the input (the CSV header is line 1).
    """
    header: list[str] | None = None
    is_json: bool | None = None
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        idle = more_ready is not None and not more_ready()
        if is_json is None:
            is_json = text.startswith("{")
            if not is_json:
                header = next(csv.reader([text]))
                continue
        if is_json:
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield ParsedBar(number, text, error=(MALFORMED, f"not JSON: {exc.msg}"), idle=idle)
                continue
            if not isinstance(record, dict):
                yield ParsedBar(number, text, error=(MALFORMED, "not a JSON object"), idle=idle)
                continue
        else:
            cells = next(csv.reader([text]))
            assert header is not None
            if len(cells) != len(header):
                detail = f"{len(cells)} fields, header has {len(header)}"
                yield ParsedBar(number, text, error=(MALFORMED, detail), idle=idle)
                continue
            record = dict(zip(header, cells, strict=True))
        bar = _bar(number, text, record, symbol, timeframe)
        yield ParsedBar(bar.line, bar.text, bar.symbol, bar.timeframe, bar.ts, bar.values, bar.error, idle)
