"""Regenerate the README's performance table from bench/results/*.json.

The table sits between ``<!-- bench:start -->`` and ``<!-- bench:end -->``; each benchmark that
has written its JSON contributes its rows, so the README never quotes a number by hand.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"


def _features(r: dict) -> list[tuple[str, str, str, str]]:
    b, n, s, m = r["batch"], r["naive_per_bar_pandas"], r["streaming"], r["memory"]
    return [
        (
            "features: batch bar-rows/s (1 core)",
            f"{b['rows_per_s']:,.0f}",
            f"{n['rows_per_s']:,.0f} (per-bar pandas)",
            "≥ 2,000,000",
        ),
        (
            "features: streaming update p50 / p99",
            f"{s['p50_us']:.1f} / {s['p99_us']:.1f} µs",
            f"{1e6 / n['rows_per_s']:,.0f} µs",
            "p99 ≤ 50 µs",
        ),
        ("features: batch peak memory", f"{m['peak_mib']:.1f} MiB for {m['rows']:,} bars", "", ""),
    ]


RENDERERS: dict[str, Callable[[dict], list[tuple[str, str, str, str]]]] = {"features.json": _features}


def render() -> str:
    lines = ["| measure | tradeloop | naive baseline | target |", "|---|---|---|---|"]
    for name, renderer in RENDERERS.items():
        path = RESULTS / name
        if path.exists():
            lines += [f"| {' | '.join(row)} |" for row in renderer(json.loads(path.read_text()))]
    return "\n".join(lines)


def main() -> int:
    text = README.read_text()
    pattern = re.compile(r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", re.S)
    if not pattern.search(text):
        print("README has no bench markers", file=sys.stderr)
        return 1
    README.write_text(pattern.sub(lambda m: m.group(1) + render() + "\n" + m.group(2), text))
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
