"""Live bar ingest: parse → validate → advance streaming state → push online and offline → checkpoint.

Bars arrive as JSON lines or CSV (a header, then one bar per line). Each bar is checked with the
foundation rules (:mod:`tradeloop.bars.validate`) against the series' last accepted bar, so an
out-of-order, duplicate, conflicting, NaN or malformed bar is rejected with a reason while the
valid bars of the same batch still land. Rejections go to the quarantine table.

Order of effects per batch, chosen so a process killed at any point continues exactly on restart:

1. features of the batch's clean bars are computed on a copy of the persisted state;
2. the newest row of each series is pushed online (window first, see ``push_online``);
3. offline feature rows and recent windows are written (atomic Parquet files);
4. the bars are appended to the bar store;
5. the state checkpoint is replaced atomically.

Before step 4 nothing is durable, so a restart re-reads the same bars and re-pushes identical
values. After step 4 the bar store is ahead of the checkpoint, and :meth:`Ingestor.state` replays
the stored bars newer than the checkpoint, so the state is never behind what was stored.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradeloop.bars.schema import VALUE_COLUMNS, Timeframe, parse_series_id, series_id
from tradeloop.bars.store import BarStore, QuarantineStore, write_parquet_atomic, write_text_atomic
from tradeloop.bars.symbols import SymbolTable
from tradeloop.bars.validate import Reason, row_reasons, validate_bars
from tradeloop.config import Settings
from tradeloop.errors import InvalidInput
from tradeloop.feature_store import OnlineWriter, open_store
from tradeloop.features import spec
from tradeloop.features.offline import feature_rows
from tradeloop.features.recent import update_windows
from tradeloop.features.streaming import StreamingFeatures
from tradeloop.ingest_input import MALFORMED, ParsedBar, parse_lines

__all__ = ["IngestReport", "Ingestor", "Rejection", "state_path"]


def state_path(settings: Settings, sid: str) -> Path:
    """Where the checkpoint of one series lives (JSON, replaced atomically)."""
    symbol, timeframe = parse_series_id(sid)
    return settings.ingest_state_dir / f"timeframe={timeframe}" / f"{symbol}.json"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One bar that did not land: its input line, series, timestamp, reason code and why."""

    line: int
    series_id: str | None
    ts: str | None
    reason: str
    detail: str


@dataclass(slots=True)
class IngestReport:
    """What one ingest run did; ``accepted`` counts bars that landed, per series."""

    accepted: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for r in self.rejected).items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": sum(self.accepted.values()),
            "series": dict(sorted(self.accepted.items())),
            "rejected": len(self.rejected),
            "reasons": self.reasons,
            "rejections": [asdict(r) for r in self.rejected],
        }


@dataclass(slots=True)
class _Series:
    """Checkpointed state of one series: streaming features plus the last accepted bar."""

    stream: StreamingFeatures
    last_ts: pd.Timestamp | None
    last_bar: tuple[float, ...] | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "stream": self.stream.to_state(),
                "last_ts": self.last_ts.isoformat() if self.last_ts is not None else None,
                "last_bar": self.last_bar,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _Series:
        data = json.loads(text)
        last_ts = pd.Timestamp(data["last_ts"]) if data["last_ts"] else None
        last_bar = tuple(data["last_bar"]) if data["last_bar"] else None
        return cls(StreamingFeatures.from_state(data["stream"]), last_ts, last_bar)

    def advance(self, bars: pd.DataFrame) -> list[tuple[list[float], tuple[float, ...], np.ndarray | None]]:
        """Feed ``bars`` (canonical, newer than ``last_ts``); per bar: indicators, channels, window."""
        out = []
        for ts, *bar in bars[["ts", *VALUE_COLUMNS]].itertuples(index=False):
            feats, channel = self.stream.update(*bar)
            out.append((feats, channel, self.stream.window_array()))
            self.last_ts, self.last_bar = ts, tuple(bar)
        return out


def _parsed(row: Any, symbol: str, timeframe: str) -> ParsedBar:
    """One row of the importer's canonical frame as the bar the ingest path validates."""
    values = tuple(float(getattr(row, k)) for k in VALUE_COLUMNS)
    text = ",".join(str(v) for v in (row.ts, *values))
    if pd.isna(row.ts):
        return ParsedBar(int(row.row), text, symbol, timeframe, error=(MALFORMED, "unparsable timestamp"))
    return ParsedBar(int(row.row), text, symbol, timeframe, pd.Timestamp(row.ts), values)


class Ingestor:
    """Ingests batches of bars for any number of series into one home's stores."""

    def __init__(
        self, settings: Settings, *, source: str = "ingest", environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.source = source
        self.online = OnlineWriter(open_store(settings, environ))
        self.bars = BarStore(settings)
        self._states: dict[str, _Series] = {}
        self.report = IngestReport()

    def state(self, sid: str) -> _Series:
        """The series' state: the checkpoint, caught up with any newer stored bars."""
        if sid in self._states:
            return self._states[sid]
        path = state_path(self.settings, sid)
        state = (
            _Series.from_json(path.read_text()) if path.exists() else _Series(StreamingFeatures(), None, None)
        )
        symbol, timeframe = parse_series_id(sid)
        stored = self.bars.read(symbol, timeframe)
        if state.last_ts is not None:
            stored = stored.loc[stored["ts"] > state.last_ts]
        if len(stored):
            state.advance(stored)
        self._states[sid] = state
        return state

    def run(
        self,
        lines: Iterable[str],
        *,
        batch_size: int = 500,
        symbol: str | None = None,
        timeframe: str | None = None,
        more_ready: Callable[[], bool] | None = None,
    ) -> IngestReport:
        """Ingest every line (JSON or CSV, see :func:`parse_lines`) in batches of ``batch_size``."""
        if batch_size < 1:
            raise InvalidInput("batch_size", f"must be at least 1, got {batch_size}")
        parsed = parse_lines(lines, symbol=symbol, timeframe=timeframe, more_ready=more_ready)
        for batch in _chunks(parsed, batch_size):
            self.ingest(batch)
        return self.report

    def run_file(
        self,
        path: Path,
        *,
        batch_size: int = 500,
        symbol: str | None = None,
        timeframe: str | None = None,
    ) -> IngestReport:
        """Ingest a bar file read by the importer's reader (every layout ``data import`` takes).

        Rows keep the file's order, except that a file written newest-first is read oldest-first
        as import does; ``line`` is the 1-based data row. An unparsable timestamp is a
        ``malformed`` bar, a missing value a ``nan`` one, as on the line-by-line path.
        """
        from tradeloop.bars.importer import read_series

        if batch_size < 1:
            raise InvalidInput("batch_size", f"must be at least 1, got {batch_size}")
        for sym, tf, rows in read_series(path, symbol=symbol, timeframe=timeframe):
            if len(rows) > 1 and rows["ts"].is_monotonic_decreasing:
                rows = rows.iloc[::-1]
            parsed = (_parsed(row, sym, tf.name) for row in rows.itertuples(index=False))
            for batch in _chunks(parsed, batch_size):
                self.ingest(batch)
        return self.report

    def ingest(self, batch: list[ParsedBar]) -> None:
        """Validate and land one batch; rejected bars are reported and quarantined."""
        rejected: list[tuple[ParsedBar, str, str]] = [(b, b.error[0], b.error[1]) for b in batch if b.error]
        by_series: dict[str, list[ParsedBar]] = {}
        for bar in batch:
            if not bar.error:
                by_series.setdefault(series_id(bar.symbol, bar.timeframe), []).append(bar)
        landed = []
        for sid, bars in by_series.items():
            clean, bad = self._validate(sid, bars)
            rejected += bad
            if len(clean):
                landed.append((sid, clean))
        for sid, clean in landed:
            self._land(sid, clean)
        self._reject(rejected)

    def _validate(
        self, sid: str, bars: list[ParsedBar]
    ) -> tuple[pd.DataFrame, list[tuple[ParsedBar, str, str]]]:
        """Clean bars of one series in arrival order, and each rejected bar with its reason."""
        state = self.state(sid)
        tf = Timeframe.parse(bars[0].timeframe)
        frame = pd.DataFrame(
            {"row": [b.line for b in bars], "ts": pd.to_datetime([b.ts for b in bars], utc=True)}
            | {k: [b.values[i] for b in bars] for i, k in enumerate(VALUE_COLUMNS)}
        )
        reasons = row_reasons(frame, tf)
        by_line = {b.line: b for b in bars}
        bad: list[tuple[ParsedBar, str, str]] = []
        keep: list[int] = []
        last_ts, seen = state.last_ts, {}
        if state.last_ts is not None and state.last_bar is not None:
            seen[state.last_ts] = state.last_bar
        for i, row in enumerate(frame.itertuples(index=False)):
            if pd.notna(reasons.iloc[i]):
                bad.append((by_line[row.row], str(reasons.iloc[i]), "failed bar check"))
                continue
            values = tuple(getattr(row, k) for k in VALUE_COLUMNS)
            if last_ts is not None and row.ts <= last_ts:
                reason, detail = self._order_reason(sid, row.ts, values, seen, last_ts)
                bad.append((by_line[row.row], reason, detail))
                continue
            keep.append(i)
            last_ts, seen[row.ts] = row.ts, values
        checked = validate_bars(frame.iloc[keep], tf, prev_close=state.stream.prev_close)
        for r in checked.rejected.itertuples(index=False):
            bad.append((by_line[r.row], r.reason, f"more than {Reason.PRICE_SPIKE} limit from last close"))
        return checked.clean, bad

    def _order_reason(
        self, sid: str, ts: pd.Timestamp, values: tuple[float, ...], seen: dict, last_ts: pd.Timestamp
    ) -> tuple[str, str]:
        """Why a bar at or before the last accepted one is refused: repeat, restatement or late."""
        known = seen.get(ts)
        if known is None:
            symbol, timeframe = parse_series_id(sid)
            stored = self.bars.read(symbol, timeframe).set_index("ts")
            if ts in stored.index:
                known = tuple(float(x) for x in stored.loc[ts, list(VALUE_COLUMNS)])
        if known is None:
            return Reason.UNSORTED.value, f"older than the last accepted bar {last_ts.isoformat()}"
        if tuple(known) == values:
            return Reason.DUPLICATE_TS.value, "this bar was already ingested"
        return Reason.CONFLICTING_DUPLICATE.value, "restates an ingested bar with different values"

    def _land(self, sid: str, clean: pd.DataFrame) -> None:
        """Steps 1–5 of the module docstring for one series' clean bars."""
        symbol, timeframe = parse_series_id(sid)
        state = self.state(sid)
        trial = _Series.from_json(state.to_json())  # the checkpoint moves only at the end
        start = trial.stream.count
        results = trial.advance(clean)
        created = pd.Timestamp.now(tz="UTC")
        meta = spec.metadata_values(SymbolTable(self.settings).get(symbol).asset_class, timeframe)
        first_valid = max(0, spec.WARMUP - start)
        rows = results[first_valid:]
        stamps = clean["ts"].iloc[first_valid:].reset_index(drop=True)
        offline = _offline_frame(sid, stamps, rows, created, meta)
        windows = pd.DataFrame(
            {
                "series_id": sid,
                "ts": [t for t, (_, _, w) in zip(stamps, rows, strict=True) if w is not None],
                "created": created,
                "window": [w.reshape(-1) for _, _, w in rows if w is not None],
            }
        )
        if len(offline):
            self.online.write(offline.iloc[[-1]][_online_columns()], windows.iloc[-1:])
            first, last = (offline["ts"].iloc[i].strftime("%Y%m%dT%H%M%S") for i in (0, -1))
            name = f"ingest-{first}-{last}-{uuid.uuid4().hex[:8]}.parquet"
            folder = self.settings.features_dir / f"timeframe={timeframe}" / f"symbol={symbol}"
            write_parquet_atomic(offline, folder / name)
            update_windows(self.settings, symbol, timeframe, windows)
        # Every bar here is newer than the checkpoint, which is caught up with the store when
        # loaded, so none is stored yet: no need for merge's full read of the series per batch.
        self.bars.append(clean, symbol, timeframe)
        if start == 0:
            SymbolTable(self.settings).ensure(symbol)
        write_text_atomic(trial.to_json(), state_path(self.settings, sid))
        self._states[sid] = trial
        self.report.accepted[sid] += len(clean)

    def _reject(self, rejected: list[tuple[ParsedBar, str, str]]) -> None:
        if not rejected:
            return
        rejected.sort(key=lambda item: item[0].line)
        for bar, reason, detail in rejected:
            sid = series_id(bar.symbol, bar.timeframe) if bar.symbol and bar.timeframe else None
            ts = bar.ts.isoformat() if bar.ts is not None else None
            self.report.rejected.append(Rejection(bar.line, sid, ts, reason, f"{detail}: {bar.text}"))
        frame = pd.DataFrame(
            {
                "row": [b.line for b, _, _ in rejected],
                "ts": [b.ts.isoformat() if b.ts is not None else None for b, _, _ in rejected],
                "symbol": [b.symbol for b, _, _ in rejected],
                "timeframe": [b.timeframe for b, _, _ in rejected],
                "reason": [r for _, r, _ in rejected],
                "detail": [f"{d}: {b.text}" for b, _, d in rejected],
            }
        )
        QuarantineStore(self.settings).add(frame, source=self.source)


def _online_columns() -> list[str]:
    return ["series_id", "ts", "created", *spec.FEATURE_NAMES, *spec.METADATA]


def _offline_frame(
    sid: str,
    stamps: pd.Series,
    rows: list[tuple[list[float], tuple[float, ...], np.ndarray | None]],
    created: pd.Timestamp,
    meta: tuple[float, float],
) -> pd.DataFrame:
    """Offline rows of streamed features, in the batch build's layout."""
    width = len(spec.FEATURE_NAMES) + len(spec.CHANNELS)
    values = np.asarray([(*f, *c) for f, c, _ in rows], dtype=np.float32).reshape(len(rows), width)
    return feature_rows(sid, stamps, values, created, meta)


def _chunks(items: Iterator[ParsedBar], size: int) -> Iterator[list[ParsedBar]]:
    """Batches of at most ``size``; a batch also ends when the input has nothing more ready."""
    batch: list[ParsedBar] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size or item.idle:
            yield batch
            batch = []
    if batch:
        yield batch
