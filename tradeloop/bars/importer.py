"""Import and validate bar files: load → split per series → validate → merge → quarantine → report.

This is what ``tradeloop data import`` and ``data validate`` run. A file-level problem raises
:class:`UnusableFile` before anything is written; row-level problems are quarantined and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from tradeloop.bars.calendar import count_gaps
from tradeloop.bars.loaders import RawBars, load_bars, names_from_filename
from tradeloop.bars.schema import Timeframe, validate_symbol
from tradeloop.bars.store import BarStore, QuarantineStore
from tradeloop.bars.symbols import SymbolTable
from tradeloop.bars.validate import DEFAULT_SPIKE_LOG, Reason, validate_bars
from tradeloop.config import Settings
from tradeloop.errors import UnusableFile

__all__ = ["SeriesReport", "import_file", "infer_timeframe", "read_series"]


@dataclass(slots=True)
class SeriesReport:
    """What happened to one series of one file; ``rows_read`` = stored + already + quarantined."""

    source: str
    symbol: str
    timeframe: str
    asset_class: str
    rows_read: int
    stored: int = 0
    already_stored: int = 0
    duplicates_removed: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    missing_bars: int = 0
    longest_gap_bars: int = 0
    zero_volume: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    newest_first: bool = False

    @property
    def usable(self) -> int:
        return self.stored + self.already_stored

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def infer_timeframe(ts: pd.Series, source: str) -> Timeframe:
    """The timeframe whose length is the most common spacing between consecutive bars."""
    stamps = pd.DatetimeIndex(ts.dropna()).sort_values().unique()
    steps = pd.Series(stamps[1:] - stamps[:-1])
    if steps.empty:
        raise UnusableFile(source, "cannot infer timeframe from fewer than two bars; pass --timeframe")
    common = steps.mode().iloc[0]
    tf = Timeframe.from_delta(common)
    if tf is None:
        raise UnusableFile(
            source, f"cannot infer timeframe: most common bar spacing is {common}; pass --timeframe"
        )
    return tf


def _split_series(
    raw: RawBars, symbol: str | None, timeframe: str | None
) -> list[tuple[str, str | None, pd.DataFrame]]:
    """One (symbol, timeframe, rows) group per series in the file; options beat columns beat names."""
    frame = raw.frame
    name_symbol, name_tf = names_from_filename(Path(raw.source))
    if symbol:
        frame = frame.assign(symbol=validate_symbol(symbol))
    elif frame["symbol"].isna().all():
        if name_symbol is None:
            raise UnusableFile(
                raw.source, "no symbol: name the file SYMBOL_TF.csv, add a symbol column or pass --symbol"
            )
        frame = frame.assign(symbol=validate_symbol(name_symbol))
    else:
        frame = frame.assign(symbol=frame["symbol"].fillna(frame["symbol"].dropna().iloc[0]))
    chosen_tf = timeframe or (None if frame["timeframe"].notna().any() else name_tf)
    groups = []
    for (sym, tf_col), rows in frame.groupby(
        ["symbol", frame["timeframe"].fillna("")], sort=True, dropna=False
    ):
        groups.append((validate_symbol(str(sym)), chosen_tf or (str(tf_col) or None), rows))
    return groups


def read_series(
    path: str | Path, *, symbol: str | None = None, timeframe: str | None = None
) -> list[tuple[str, Timeframe, pd.DataFrame]]:
    """Each series of a bar file as (symbol, timeframe, raw rows): the one reader of bar files.

    ``data import`` and ``tradeloop ingest FILE`` both read files here, so every layout one
    accepts the other does: options beat symbol/timeframe columns beat the ``SYMBOL_TF`` file
    name, and a timeframe nobody names is inferred from the bars' spacing.
    """
    source = str(Path(path).resolve())
    raw = RawBars(source, load_bars(path).frame)
    plans = []
    for sym, tf_name, rows in _split_series(raw, symbol, timeframe):
        tf = Timeframe.parse(tf_name) if tf_name else infer_timeframe(rows["ts"], source)
        plans.append((sym, tf, rows))
    return plans


def import_file(
    path: str | Path,
    settings: Settings,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    store: bool = True,
    spike_log: float = DEFAULT_SPIKE_LOG,
) -> list[SeriesReport]:
    """Validate ``path`` and (unless ``store`` is False) store its clean bars; one report per series."""
    source = str(Path(path).resolve())
    plans = read_series(path, symbol=symbol, timeframe=timeframe)
    bars, quarantine, symbols = BarStore(settings), QuarantineStore(settings), SymbolTable(settings)
    reports = []
    for sym, tf, rows in plans:
        info = symbols.get(sym)
        existing = bars.read(sym, tf.name)
        older = existing.loc[existing["ts"] < rows["ts"].min(), "close"]
        prev_close = float(older.iloc[-1]) if len(older) else None  # the spike check's reference
        checked = validate_bars(rows, tf, spike_log=spike_log, prev_close=prev_close)
        merge = bars.merge(checked.clean, sym, tf, existing=existing, dry_run=not store)
        conflicts = merge.conflicts.assign(reason=Reason.CONFLICTING_DUPLICATE.value)
        conflicts["detail"] = "restates a stored bar with different values"
        rejected = pd.concat([checked.rejected, conflicts], ignore_index=True)
        rejected["symbol"], rejected["timeframe"] = sym, tf.name
        counts = Counter(rejected["reason"])
        usable = checked.clean.loc[~checked.clean["ts"].isin(merge.conflicts["ts"])]
        gaps = count_gaps(usable["ts"], tf, info.asset_class)
        report = SeriesReport(
            source=source,
            symbol=sym,
            timeframe=tf.name,
            asset_class=info.asset_class,
            rows_read=len(rows),
            stored=len(merge.new),
            already_stored=merge.identical,
            duplicates_removed=counts.get(Reason.DUPLICATE_TS.value, 0),
            quarantined=dict(sorted(counts.items())),
            gaps=gaps.gaps,
            missing_bars=gaps.missing,
            longest_gap_bars=gaps.longest,
            zero_volume=int((usable["volume"] == 0).sum()),
            first_ts=usable["ts"].iloc[0].isoformat() if len(usable) else None,
            last_ts=usable["ts"].iloc[-1].isoformat() if len(usable) else None,
            newest_first=checked.newest_first,
        )
        if store:
            quarantine.add(rejected, source=source)
            if report.usable:
                symbols.ensure(sym)
        reports.append(report)
    return reports
