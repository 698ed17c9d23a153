"""Serving: the latency the demo measured per protocol and the answers while bars streamed in.

Reads ``HOME/demo/serving.json`` and ``HOME/demo/stream.json`` (written by ``tradeloop demo``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tradeloop.config import Settings
from tradeloop.report.page import empty, esc, figure, table

__all__ = ["serving"]


def _latency(data: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    calls = data.get("calls", {})
    rows = [
        (
            name,
            s["n"],
            f"{s['p50_ms']:.2f}",
            f"{s['p90_ms']:.2f}",
            f"{s['p99_ms']:.2f}",
            f"{s['mean_ms']:.2f}",
        )
        for name, s in calls.items()
    ]
    parts = [
        f"<p>{esc(data.get('engine', '?'))} server on loopback, measured {esc(data.get('measured_at', ''))} "
        "by a client in another process: sequential calls for one series, each the whole round trip "
        "(online-store read, CNN, XGBoost, calibration, encoding).</p>",
        table(("protocol", "calls", "p50 ms", "p90 ms", "p99 ms", "mean ms"), rows),
    ]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for name, stats in calls.items():
        samples = np.sort(np.asarray(stats.get("samples_ms", []), dtype=float))
        if len(samples):
            ax.plot(samples, np.arange(1, len(samples) + 1) / len(samples), label=name)
    ax.set_xlabel("round trip (ms)")
    ax.set_ylabel("share of calls")
    ax.set_title("latency ECDF per protocol", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    parts.append(figure(fig, "latency ECDF per protocol"))
    return "".join(parts)


def _stream(rows: list[dict[str, Any]]) -> str:
    import matplotlib.pyplot as plt

    shown = [
        (
            r["bars_ingested"],
            str(r["as_of"])[:16].replace("T", " "),
            "–" if r.get("feature_age_s") is None else f"{r['feature_age_s'] / 86400:,.1f} d",
            f"{r['prob_up']:.4f}",
            r["signal"],
            r["model_version"],
        )
        for r in rows
    ]
    parts = [
        "<h3>Answers while new bars arrive</h3><p>After each <code>tradeloop ingest</code> of held-back "
        "bars the server was asked again: <code>as_of</code> follows the newest bar. Feature age is "
        "measured against today's clock (the bars are a historical replay).</p>",
        table(("bars ingested", "as_of", "feature age", "prob_up", "signal", "model"), shown),
    ]
    fig, ax = plt.subplots(figsize=(7, 2.4))
    ax.plot([np.datetime64(str(r["as_of"])[:19]) for r in rows], [r["prob_up"] for r in rows], marker="o")
    ax.set_title("prob_up of EURUSD 1h as bars were streamed", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    parts.append(figure(fig, "prob_up while streaming"))
    return "".join(parts)


def serving(settings: Settings) -> str:
    parts = []
    latency = settings.demo_dir / "serving.json"
    stream = settings.demo_dir / "stream.json"
    if latency.is_file():
        parts.append(_latency(json.loads(latency.read_text())))
    if stream.is_file():
        parts.append(_stream(json.loads(stream.read_text())))
    if not parts:
        return empty("No serving measurements yet: `tradeloop demo` records them while its server runs.")
    return "".join(parts)
