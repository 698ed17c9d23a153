"""Line-by-line parsing of live bars (JSON lines or CSV) into bars or per-line errors.

Field names and timestamps are read with the importer's rules (:mod:`tradeloop.bars.loaders`:
the same column aliases in any casing, the same timestamp inference), so a header ``data
import`` understands is understood here too.

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

from tradeloop.bars.loaders import (
    COLUMN_ALIASES,
    SYMBOL_ALIASES,
    TIMEFRAME_ALIASES,
    TS_ALIASES,
    norm,
    parse_timestamp,
)
from tradeloop.bars.schema import VALUE_COLUMNS, Timeframe, validate_symbol
from tradeloop.errors import InvalidInput, UnusableFile

__all__ = ["MALFORMED", "MISSING_FIELD", "ParsedBar", "parse_lines"]

MALFORMED = "malformed"
MISSING_FIELD = "missing_field"


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


def _timestamp(value: object, column: str) -> pd.Timestamp:
    """One value through the importer's timestamp parser; a lone ``01/02/2023`` is refused as
    ambiguous (one line cannot settle the day/month order), never guessed."""
    if isinstance(value, bool):
        raise ValueError(f"{column} is a boolean")
    try:
        ts = parse_timestamp(value, "line", column)
    except UnusableFile as exc:
        raise ValueError(exc.reason) from exc
    if pd.isna(ts):
        raise ValueError(f"unparsable timestamp {value!r}")
    return ts


def _first(keys: dict[str, object], aliases: Iterable[str]) -> str | None:
    return next((a for a in aliases if a in keys), None)


def _bar(
    line: int, text: str, record: dict[str, object], symbol: str | None, timeframe: str | None
) -> ParsedBar:
    keys = {norm(k): v for k, v in record.items()}
    ts_key = _first(keys, TS_ALIASES)
    sym_key, tf_key = _first(keys, SYMBOL_ALIASES), _first(keys, TIMEFRAME_ALIASES)
    sym = keys.get(sym_key) if sym_key else symbol
    tf = keys.get(tf_key) if tf_key else timeframe
    value_keys = {name: _first(keys, COLUMN_ALIASES[name]) for name in VALUE_COLUMNS}
    missing = [
        name
        for name, present in (("ts", ts_key), ("symbol", sym), ("timeframe", tf))
        if present in (None, "")
    ] + [name for name, key in value_keys.items() if key is None]
    if missing:
        return ParsedBar(line, text, error=(MISSING_FIELD, f"missing {', '.join(missing)}"))
    try:
        sym_ok = validate_symbol(str(sym).strip().upper())
        tf_ok = Timeframe.parse(str(tf)).name
        ts = _timestamp(keys[ts_key], ts_key or "ts")  # type: ignore[index]
        values = tuple(_number(keys[value_keys[k]], k) for k in VALUE_COLUMNS)  # type: ignore[index]
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
