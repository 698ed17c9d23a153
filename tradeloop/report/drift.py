"""Drift: every monitor check's decision, and the latest check's tables and distribution plots.

The plots are the monitor's own (``HOME/monitor/report.html``, written by ``monitor check``):
its body is embedded here, so the two reports never draw the same thing two ways.
"""

from __future__ import annotations

import json
import re

from tradeloop.config import Settings
from tradeloop.report.page import empty, table

__all__ = ["drift"]


def _history(lines: list[str]) -> str:
    rows = []
    for line in lines:
        check = json.loads(line)
        breaching = ", ".join(k for k, v in (check.get("breaching") or {}).items() if v) or "none"
        drifted = ", ".join(s for s, e in (check.get("series") or {}).items() if e.get("drifted")) or "none"
        rows.append(
            (
                str(check.get("checked_at", ""))[:19],
                f"v{check.get('champion', '?')}",
                drifted,
                "yes" if (check.get("predictions") or {}).get("drifted") else "no",
                breaching,
                check.get("fired") or "no trigger",
            )
        )
    columns = ("checked", "champion", "drifted series", "prediction drift", "breaching", "decision")
    return table(columns, rows)


def _monitor_body(settings: Settings) -> str:
    page = settings.home / "monitor" / "report.html"
    if not page.is_file():
        return ""
    body = page.read_text(encoding="utf-8")
    match = re.search(r"<body>(.*)</body>", body, re.S)
    inner = match.group(1) if match else ""
    # The monitor's title becomes a bold line, its headings sit below this section's heading.
    inner = re.sub(r"<h1>(.*?)</h1>", r"<p><b>\1</b></p>", inner, count=1, flags=re.S)
    return "<h3>Latest check</h3>" + re.sub(r"<(/?)h2>", r"<\1h4>", inner)


def drift(settings: Settings) -> str:
    decisions = settings.home / "monitor" / "decisions.jsonl"
    lines = decisions.read_text().splitlines() if decisions.is_file() else []
    if not lines:
        return empty("No monitor check yet: run `tradeloop monitor check`.")
    return _history(lines) + _monitor_body(settings)
