"""The whole-loop report: one self-contained HTML file, ``HOME/report/index.html``.

Data quality, training metrics and equity against the baselines, serving latency, drift and the
promotion history, each gathered from what the stages left on disk; a stage that has not run yet
is said to be missing rather than failing the page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tradeloop.bars.store import write_text_atomic
from tradeloop.config import Settings
from tradeloop.report.page import CSS, esc, section

__all__ = ["build_report"]

SECTIONS = (
    ("quality", "Data quality"),
    ("training", "Training: metrics and equity against the baselines"),
    ("serving", "Serving latency"),
    ("drift", "Drift"),
    ("promotions", "Promotion history"),
)


def build_report(settings: Settings) -> Path:
    """Write ``settings.report_dir / "index.html"`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    from tradeloop.report.drift import drift
    from tradeloop.report.promotions import promotions
    from tradeloop.report.quality import data_quality
    from tradeloop.report.serving import serving
    from tradeloop.report.training import training

    builders = {
        "quality": data_quality,
        "training": training,
        "serving": serving,
        "drift": drift,
        "promotions": promotions,
    }
    toc = "".join(f'<li><a href="#{key}">{esc(title)}</a></li>' for key, title in SECTIONS)
    body = "\n".join(section(key, title, builders[key](settings)) for key, title in SECTIONS)
    made = datetime.now(UTC).isoformat(timespec="seconds")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>tradeloop report</title>"
        f"<style>{CSS}</style></head><body><h1>tradeloop — the whole loop</h1>"
        f'<p class="note">home {esc(settings.home)}; built {esc(made)}</p><ul>{toc}</ul>{body}</body></html>'
    )
    path = settings.report_dir / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(page, path)
    return path
