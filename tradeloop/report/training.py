"""Training: each registered version's walk-forward metrics beside the baselines, with the
bootstrap intervals of its edges, and the equity curves the training run drew."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tradeloop.config import Settings
from tradeloop.registry import ModelVersionInfo, Registry
from tradeloop.report.page import empty, esc, img, table

__all__ = ["open_registry", "training"]

PREDICTORS = ("model", "always_long", "persistence", "shuffled_control", "cnn_only")


def _report_dir(registry: Registry, version: ModelVersionInfo) -> Path | None:
    """The run's ``report/`` artifacts: local for the embedded store, downloaded otherwise."""
    uri = version.source.rsplit("/bundle", 1)[0] + "/report"
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        return path if path.is_dir() else None
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        return Path(download_artifacts(artifact_uri=uri, tracking_uri=registry.uri))
    except (MlflowException, OSError):  # a missing report must not stop the rest of the page
        return None


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _interval(entry: dict[str, Any] | None) -> str:
    if not entry:
        return ""
    return f"{entry['edge']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"


def _metrics(report: dict[str, Any]) -> str:
    crit = report.get("criteria", {})
    acc_edges, ic_edges = crit.get("accuracy_edge", {}), crit.get("rank_ic_edge", {})
    rows = []
    for name in PREDICTORS:
        overall = report["models"].get(name, {}).get("overall")
        if overall is None:
            continue
        rows.append(
            (
                name,
                _fmt(overall.get("directional_accuracy"), ".3f"),
                _fmt(overall.get("rank_ic"), ".3f"),
                _fmt(overall.get("sharpe"), ".2f"),
                _fmt(overall.get("max_drawdown"), ".3f"),
                _fmt(overall.get("turnover"), ".3f"),
                _interval(acc_edges.get(name)),
                _interval(ic_edges.get(name)),
            )
        )
    columns = (
        "predictor",
        "dir acc",
        "rank IC",
        "Sharpe",
        "max DD",
        "turnover",
        "model's acc edge",
        "rank-IC edge",
    )
    ic = crit.get("rank_ic")
    level = crit.get("level", 0.95)
    head = (
        f"<p>{report['rows']:,} out-of-sample rows in {len(report.get('folds', []))} walk-forward folds, "
        f"{esc(report.get('start', '')[:10])} → {esc(report.get('end', '')[:10])}; costs (bps) "
        f"{esc(report.get('context', {}).get('cost_bps'))}. Edges are the model minus that baseline "
        f"on the same rows, with {level:.0%} block-bootstrap intervals"
        + (f"; the model's rank IC is {ic['value']:.3f} [{ic['low']:.3f}, {ic['high']:.3f}]" if ic else "")
        + ".</p>"
    )
    return head + table(columns, rows)


def _version(registry: Registry, version: ModelVersionInfo) -> str:
    tags = version.tags
    aliases = ", ".join(version.aliases) or "no alias"
    parts = [f"<h3>v{esc(version.version)} ({esc(aliases)})</h3>"]
    decision = tags.get("gate.decision")
    if decision:
        parts.append(f"<p>gate: <b>{esc(decision)}</b> — {esc(tags.get('gate.reason', ''))}</p>")
    folder = _report_dir(registry, version)
    if folder is None or not (folder / "report.json").is_file():
        return "".join(parts) + empty("This version's training report could not be read.")
    report = json.loads((folder / "report.json").read_text())
    parts.append(_metrics(report))
    equity = folder / "equity.png"
    if equity.is_file():
        parts.append(
            img(equity.read_bytes(), f"v{version.version} walk-forward equity against the baselines")
        )
    return "".join(parts)


def open_registry(settings: Settings) -> Registry | None:
    """The registry, or None when the embedded one was never created (opening it would create it)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    return Registry(settings, uri)


def training(settings: Settings) -> str:
    registry = open_registry(settings)
    versions = registry.versions() if registry is not None else []
    if registry is None or not versions:
        return empty("No model trained yet: run `tradeloop train`.")
    return "".join(_version(registry, v) for v in versions)
