"""Canonical bar storage (partitioned Parquet) and the quarantine table.

Layout: ``bars/timeframe=TF/symbol=SYM/part-<first>-<last>-<id>.parquet``. Parts are only ever
added, each written to a temporary name and renamed into place, so a crash never leaves half a
part and a stored bar is never rewritten: a restated bar with other values is handed back as a
conflict for quarantine.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tradeloop.bars.schema import VALUE_COLUMNS, Timeframe
from tradeloop.config import Settings

__all__ = [
    "BarStore",
    "Merge",
    "QuarantineStore",
    "SeriesInfo",
    "write_parquet_atomic",
    "write_text_atomic",
]

_PART_COLUMNS = ["ts", *VALUE_COLUMNS]


def _replace_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Run ``write`` on a temporary sibling of ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary file and an atomic rename."""
    _replace_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_text_atomic(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    _replace_atomic(path, lambda tmp: tmp.write_text(text))


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One stored series and its extent."""

    symbol: str
    timeframe: str
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp


@dataclass(frozen=True, slots=True)
class Merge:
    """What merging validated bars into the store did (or would do, on a dry run)."""

    new: pd.DataFrame  # bars not stored before
    identical: int  # bars already stored with the same values
    conflicts: pd.DataFrame  # bars whose ts is stored with other values


class BarStore:
    """Append-only canonical bars under ``Settings.bars_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.bars_dir

    def series_dir(self, symbol: str, timeframe: str) -> Path:
        return self.root / f"timeframe={timeframe}" / f"symbol={symbol}"

    def read(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """All stored bars of one series, sorted by ts, as a canonical frame (may be empty)."""
        parts = sorted(self.series_dir(symbol, timeframe).glob("part-*.parquet"))
        if parts:
            frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
            frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
        else:
            frame = pd.DataFrame({k: pd.Series(dtype="float64") for k in _PART_COLUMNS})
            frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
        frame.insert(1, "symbol", symbol)
        frame.insert(2, "timeframe", timeframe)
        return frame[["ts", "symbol", "timeframe", *VALUE_COLUMNS]]

    def series(self) -> Iterator[SeriesInfo]:
        """Every stored series with its row count and range, ordered by timeframe then symbol."""
        for tf_dir in sorted(self.root.glob("timeframe=*")):
            for sym_dir in sorted(tf_dir.glob("symbol=*")):
                symbol, timeframe = sym_dir.name.split("=", 1)[1], tf_dir.name.split("=", 1)[1]
                ts = pd.concat(
                    [pd.read_parquet(p, columns=["ts"])["ts"] for p in sym_dir.glob("part-*.parquet")]
                    or [pd.Series(dtype="datetime64[ns, UTC]")]
                )
                if len(ts):
                    yield SeriesInfo(symbol, timeframe, len(ts), ts.min(), ts.max())

    def merge(
        self,
        clean: pd.DataFrame,
        symbol: str,
        tf: Timeframe,
        *,
        existing: pd.DataFrame | None = None,
        dry_run: bool = False,
    ) -> Merge:
        """Append the bars of ``clean`` that are new; report identical and conflicting ones.

        ``existing`` is the series as :meth:`read` returns it, for callers that already hold it.
        """
        if existing is None:
            existing = self.read(symbol, tf.name)
        existing = existing.set_index("ts")[list(VALUE_COLUMNS)]
        known = clean["ts"].isin(existing.index).to_numpy()
        new = clean.loc[~known].reset_index(drop=True)
        seen = clean.loc[known]
        same = (existing.loc[seen["ts"]].to_numpy() == seen[list(VALUE_COLUMNS)].to_numpy()).all(axis=1)
        conflicts = seen.loc[~same].reset_index(drop=True)
        if len(new) and not dry_run:
            self.append(new, symbol, tf.name)
        return Merge(new=new, identical=int(same.sum()), conflicts=conflicts)

    def append(self, bars: pd.DataFrame, symbol: str, timeframe: str) -> None:
        """Add ``bars`` as one new part, unchecked: callers know none of them is stored yet."""
        first, last = (bars["ts"].iloc[i].strftime("%Y%m%dT%H%M") for i in (0, -1))
        name = f"part-{first}-{last}-{uuid.uuid4().hex[:8]}.parquet"
        part = bars[_PART_COLUMNS].reset_index(drop=True)
        write_parquet_atomic(part, self.series_dir(symbol, timeframe) / name)


class QuarantineStore:
    """Rejected bars with their reason, source file and row; re-quarantining is a no-op."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.quarantine_dir

    def read(self) -> pd.DataFrame:
        parts = sorted(self.root.glob("part-*.parquet"))
        if not parts:
            return pd.DataFrame(columns=["key", "reason", "source", "row", "symbol", "timeframe"])
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)

    def add(self, rejected: pd.DataFrame, *, source: str) -> int:
        """Store rows of ``rejected`` not quarantined before; returns how many were new."""
        if rejected.empty:
            return 0
        rows = rejected.copy()
        rows["source"] = source
        rows["quarantined_at"] = pd.Timestamp.now(tz="UTC")
        rows["key"] = [_row_key(r) for r in rows[["source", "row", "reason", "detail"]].itertuples()]
        known = set(self.read()["key"]) if self.root.exists() else set()
        rows = rows.loc[~rows["key"].isin(known)]
        if rows.empty:
            return 0
        for column in ("symbol", "timeframe"):
            rows[column] = rows[column].astype("string")
        write_parquet_atomic(rows.reset_index(drop=True), self.root / f"part-{uuid.uuid4().hex}.parquet")
        return len(rows)


def _row_key(row: tuple[object, ...]) -> str:
    return hashlib.sha256(repr(row[1:]).encode()).hexdigest()[:32]
