"""Data quality: what is stored per series, its gaps and zero-volume bars, and what was refused."""

from __future__ import annotations

from tradeloop.bars.calendar import count_gaps
from tradeloop.bars.schema import Timeframe
from tradeloop.bars.store import BarStore, QuarantineStore
from tradeloop.bars.symbols import SymbolTable
from tradeloop.config import Settings
from tradeloop.report.page import empty, table

__all__ = ["data_quality"]


def data_quality(settings: Settings) -> str:
    store, symbols = BarStore(settings), SymbolTable(settings)
    quarantine = QuarantineStore(settings).read()
    rows = []
    for info in store.series():
        bars = store.read(info.symbol, info.timeframe)
        gaps = count_gaps(bars["ts"], Timeframe.parse(info.timeframe), symbols.get(info.symbol).asset_class)
        mine = quarantine[(quarantine["symbol"] == info.symbol) & (quarantine["timeframe"] == info.timeframe)]
        refused = (
            ", ".join(f"{r} {n}" for r, n in mine["reason"].value_counts().sort_index().items()) or "none"
        )
        rows.append(
            (
                f"{info.symbol}:{info.timeframe}",
                f"{info.rows:,}",
                f"{info.first:%Y-%m-%d %H:%M}",
                f"{info.last:%Y-%m-%d %H:%M}",
                f"{gaps.gaps:,} / {gaps.missing:,}",
                f"{int((bars['volume'] == 0).sum()):,}",
                refused,
            )
        )
    if not rows:
        return empty("No bars stored yet: run `tradeloop data import FILE`.")
    columns = ("series", "bars", "first", "last", "gaps / missing bars", "zero volume", "quarantined")
    note = (
        '<p class="note">Gaps count missing bars inside each market\'s trading sessions (weekends and '
        "exchange holidays are not gaps). Quarantined bars were refused with a reason and kept aside.</p>"
    )
    return table(columns, rows) + note
