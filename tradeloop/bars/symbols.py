"""The symbols table: market metadata (asset class, venue) per symbol, inferred when absent."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from tradeloop.bars.schema import ASSET_CLASSES, infer_asset_class
from tradeloop.bars.store import write_text_atomic
from tradeloop.config import Settings
from tradeloop.errors import InvalidInput

__all__ = ["SymbolInfo", "SymbolTable"]


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    symbol: str
    asset_class: str
    venue: str = "unknown"


class SymbolTable:
    """``HOME/data/symbols.json``; a symbol missing from it gets inferred metadata."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.symbols_path

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def get(self, symbol: str) -> SymbolInfo:
        entry = self._load().get(symbol)
        if entry is None:
            return SymbolInfo(symbol, infer_asset_class(symbol))
        return SymbolInfo(symbol, entry["asset_class"], entry.get("venue", "unknown"))

    def ensure(self, symbol: str, *, asset_class: str | None = None, venue: str | None = None) -> SymbolInfo:
        """Record ``symbol`` (keeping what is known, overriding with what is given)."""
        if asset_class is not None and asset_class not in ASSET_CLASSES:
            raise InvalidInput("asset_class", f"{asset_class!r} is not one of {', '.join(ASSET_CLASSES)}")
        table = self._load()
        current = self.get(symbol)
        info = SymbolInfo(symbol, asset_class or current.asset_class, venue or current.venue)
        if table.get(symbol) != {"asset_class": info.asset_class, "venue": info.venue}:
            table[symbol] = {k: v for k, v in asdict(info).items() if k != "symbol"}
            write_text_atomic(json.dumps(table, indent=2, sort_keys=True), self.path)
        return info
