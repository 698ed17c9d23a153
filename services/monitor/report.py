"""A self-contained HTML report of the latest check: decision, drift tables, distribution plots
(reference sketch CDF against the current window's ECDF) and the rolling live accuracy."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from services.monitor.check import CheckResult
from services.monitor.live import labelled_predictions, read_prediction_log
from tradeloop.bars.schema import parse_series_id
from tradeloop.config import Settings
from tradeloop.features.recent import offline_features
from tradeloop.report.page import figure

__all__ = ["write_report"]


def write_report(settings: Settings, result: CheckResult, window_bars: int) -> Path:
    """Write ``HOME/monitor/report.html`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [
        "<html><head><meta charset='utf-8'><title>tradeloop monitor</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}</style>",
        "</head><body>",
        f"<h1>tradeloop monitor — champion v{html.escape(result.champion)}</h1>",
        f"<p>checked {html.escape(result.checked_at)}; fired: <b>{html.escape(str(result.fired))}</b>; "
        f"not fired because: {html.escape(str(result.suppressed))}; consecutive: {result.consecutive}</p>",
    ]
    for sid, entry in result.series.items():
        parts.append(f"<h2>{html.escape(sid)}: {'DRIFTED' if entry['drifted'] else 'no drift'}</h2>")
        parts.append(
            f"<p>{entry['rows']} rows {html.escape(str(entry.get('start')))} → "
            f"{html.escape(str(entry.get('end')))}</p>"
        )
        parts.append("<table><tr><th>feature</th><th>PSI</th><th>KS p</th><th>W1/σ</th></tr>")
        for row in entry.get("top", []):
            parts.append(
                f"<tr><td>{row['feature']}</td><td>{row['psi']:.3f}</td><td>{row['ks_pvalue']:.3g}</td>"
                f"<td>{row['wasserstein']:.3f}</td></tr>"
            )
        parts.append("</table>")
        top = [r["feature"] for r in entry.get("top", [])[:4]]
        ref = result.reference["features"]["series"].get(sid)
        frame = offline_features(settings, *parse_series_id(sid)).tail(window_bars)
        if top and ref is not None and not frame.empty:
            fig, axes = plt.subplots(1, len(top), figsize=(3.2 * len(top), 2.6), squeeze=False)
            probs = np.asarray(ref["probs"])
            for ax, name in zip(axes[0], top, strict=True):
                sketch = np.asarray(ref["features"][name]["sketch"])
                ax.plot(sketch, probs[: len(sketch)], label="reference")
                cur = np.sort(frame[name].dropna().to_numpy())
                ax.plot(cur, np.arange(1, len(cur) + 1) / max(len(cur), 1), label="current")
                ax.set_title(name, fontsize=8)
                ax.tick_params(labelsize=6)
            axes[0][0].legend(fontsize=6)
            fig.tight_layout()
            parts.append(figure(fig, f"{sid}: reference vs current distributions"))
    parts.append(f"<h2>Live performance</h2><p>{html.escape(str(result.performance))}</p>")
    labelled = labelled_predictions(
        settings, read_prediction_log(settings.home / "predictions"), result.horizon
    )
    if len(labelled) >= 20:
        hit = (np.sign(labelled["expected_return"]) == np.sign(labelled["realised"])).astype(float)
        rolling = hit.rolling(min(100, len(hit)), min_periods=10).mean()
        fig, ax = plt.subplots(figsize=(8, 2.6))
        ax.plot(labelled["bar"], rolling)
        if result.performance.get("baseline_accuracy") is not None:
            ax.axhline(result.performance["baseline_accuracy"], color="grey", lw=0.8, label="walk-forward")
        ax.set_title("rolling live directional accuracy", fontsize=9)
        fig.tight_layout()
        parts.append(figure(fig, "rolling live directional accuracy"))
    parts.append(f"<h2>Predictions</h2><p>{html.escape(str(result.predictions))}</p></body></html>")
    path = settings.home / "monitor" / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
