"""Promotion history: each version that became champion, when, by the gate or by hand, and why."""

from __future__ import annotations

from tradeloop.config import Settings
from tradeloop.report.page import empty, esc, table
from tradeloop.report.training import open_registry

__all__ = ["promotions"]


def promotions(settings: Settings) -> str:
    registry = open_registry(settings)
    history = registry.history() if registry is not None else []
    if not history:
        return empty("Nothing promoted yet: no version has been champion.")
    rows = []
    for version in history:
        tags = registry.get(version).tags
        manual = tags.get("promoted.manual") == "true"
        checks = "<br>".join(esc(v) for k, v in sorted(tags.items()) if k.startswith("gate.check."))
        rows.append(
            (
                f"v{esc(version)}",
                esc(tags.get("promoted.at", "")),
                '<span class="bad">MANUAL</span>' if manual else '<span class="good">gate</span>',
                esc(f"v{tags['promoted.replaced']}" if tags.get("promoted.replaced") else "–"),
                esc(tags.get("promoted.reason", "")),
                f"{esc(tags.get('gate.decision', '–'))}: {esc(tags.get('gate.reason', ''))}<br>"
                f'<span class="note">{checks}</span>',
            )
        )
    columns = ("version", "promoted at", "by", "replaced", "reason", "gate's decision and checks")
    note = (
        '<p class="note">Oldest first. A MANUAL promotion overrode the gate (<code>tradeloop models '
        "promote</code>); the gate's own decision on that version is kept beside it.</p>"
    )
    return table(columns, rows, raw=True) + note
