"""What a run leaves behind: the bundle manifest, ``report.json`` and PNG plots.

The manifest carries everything serving and the gate need (spec, W, h, group maps, FeatureService
name, data range and hash, per-fold metrics, normaliser fit ranges, code version); the report
adds learning curves, timings and the full per-timeframe backtest. Plots use matplotlib's Agg
backend so they render headless on a cluster.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import tradeloop
from tradeloop.bundle import write_manifest
from tradeloop.features import spec
from tradeloop.inference import TF_GROUPS, xgb_feature_names

if TYPE_CHECKING:
    from training.job import Prepared

__all__ = ["FEATURE_SERVICE", "code_version", "write_bundle", "write_report"]

FEATURE_SERVICE = f"tradeloop_v{spec.SPEC_VERSION}"
PLOTS = ("equity.png", "folds.png", "learning_curves.png", "calibration.png")


def code_version() -> dict[str, str | None]:
    """Package version and, when run from a checkout, the git commit (read-only query)."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"tradeloop": tradeloop.__version__, "git": sha}


def write_bundle(
    bundle_dir: Path,
    prep: Prepared,
    evaluation: dict[str, Any],
    normalisers: dict[str, Any],
    parity: dict[str, float],
    serving: dict[str, Any],
) -> dict[str, Any]:
    """Write ``bundle.json`` beside the model files already in ``bundle_dir``; returns it."""
    data, req = prep.data, prep.request
    ts = pd.DatetimeIndex(data.ts, tz="UTC")
    meta = {
        "spec_version": spec.SPEC_VERSION,
        "feature_names": list(spec.FEATURE_NAMES),
        "channels": list(spec.CHANNELS),
        "metadata_features": list(spec.METADATA),
        "xgb_features": xgb_feature_names(),
        "window": data.window,
        "horizon": data.horizon,
        "target": "forward log return / (rvol_20 · sqrt(h)), clipped to ±8; return = score · scale",
        "cnn_groups": {s.symbol: s.asset_class for s in data.series},
        "xgb_groups": {s.timeframe: TF_GROUPS[s.timeframe] for s in data.series},
        "models": {
            "cnn": {g: f"cnn/{g}.onnx" for g in sorted(set(data.group_of("cnn")))},
            "xgb": {g: f"xgb/{g}.ubj" for g in sorted(set(data.group_of("xgb")))},
        },
        "feature_service": FEATURE_SERVICE,
        "series": sorted(s.series_id for s in data.series),
        "data": {
            "start": ts.min().isoformat(),
            "end": ts.max().isoformat(),
            "samples": len(data),
            "hash": data.data_hash,
        },
        "cnn_cutoffs": {g: c.isoformat() for g, c in prep.plan.cnn_cutoffs.items()},
        "normalisers": normalisers,
        "onnx_max_abs_diff": parity,
        "evaluation": {
            "context": evaluation["context"],
            "folds": evaluation["folds"],
            "series": evaluation["series"],
            "predictors": evaluation["predictors"],
            "criteria": evaluation["criteria"],
        },
        "calibration": serving["calibration"],
        "band": serving["band"],
        "reference": serving["reference"],
        "metrics": {name: entry["overall"] for name, entry in evaluation["models"].items()},
        "control_at_chance": evaluation["control_at_chance"],
        "preset": req.preset.to_dict(),
        "shuffled_labels": req.shuffle_labels,
        "code_version": code_version(),
        "created": datetime.now(UTC).isoformat(),
    }
    return write_manifest(bundle_dir, meta)


def write_report(report_dir: Path, evaluation: dict[str, Any], equity: dict[str, dict[str, Any]]) -> Path:
    """``report.json`` and the PNG plots (equity curve, per-fold accuracy, learning curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(evaluation, indent=2, default=_jsonable))
    (report_dir / "report.md").write_text(summary_markdown(evaluation))

    timeframes = sorted({tf for curves in equity.values() for tf in curves})
    fig, axes = plt.subplots(len(timeframes), 1, figsize=(9, 3 * max(1, len(timeframes))), squeeze=False)
    for ax, tf in zip(axes[:, 0], timeframes, strict=True):
        for name, curves in equity.items():
            if tf in curves:
                ax.plot(curves[tf].index, curves[tf].to_numpy(), label=name, lw=1)
        ax.set_title(f"walk-forward equity (cumulative log P&L after costs), {tf}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(report_dir / "equity.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = list(evaluation["models"])
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        folds = evaluation["models"][name]["folds"]
        acc = [np.nan if f["directional_accuracy"] is None else f["directional_accuracy"] for f in folds]
        ax.bar(np.arange(len(acc)) + i * width, acc, width, label=name)
    ax.axhline(0.5, color="k", lw=0.5)
    ax.set_xlabel("fold")
    ax.set_ylabel("directional accuracy")
    ax.set_ylim(0.4, 0.65)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(report_dir / "folds.png", dpi=90)
    plt.close(fig)

    cal = evaluation.get("calibration")
    if cal and cal["reliability"]:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        rel = cal["reliability"]
        ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfect")
        ax.plot(
            [r["predicted"] for r in rel], [r["observed"] for r in rel], "o-", label="model (cross-fitted)"
        )
        ax.axhline(cal["base_rate"], color="grey", lw=0.8, label=f"base rate {cal['base_rate']:.3f}")
        ax.set_xlabel("predicted P(up)")
        ax.set_ylabel("observed share up")
        ax.set_title(
            f"reliability: Brier {cal['brier']:.4f} vs base rate {cal['brier_base_rate']:.4f}", fontsize=9
        )
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(report_dir / "calibration.png", dpi=90)
        plt.close(fig)

    curves = evaluation["learning_curves"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for group, history in curves["cnn"].items():
        epochs = [h["epoch"] for h in history]
        axes[0].plot(epochs, [h["train_loss"] for h in history], label=f"{group} train")
        axes[0].plot(epochs, [h["val_loss"] for h in history], "--", label=f"{group} val")
    axes[0].set_title("CNN loss per epoch")
    axes[0].legend(fontsize=7)
    for group, folds in curves["xgb"].items():
        for k, (train, test) in enumerate(folds):
            axes[1].plot(train, lw=0.8, label=f"{group} fold {k + 1} train")
            axes[1].plot(test, "--", lw=0.8, label=f"{group} fold {k + 1} test")
    axes[1].set_title("XGBoost RMSE per round (z units)")
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(report_dir / "learning_curves.png", dpi=90)
    plt.close(fig)
    return report_dir


def _num(value: Any, spec: str = ".4f") -> str:
    return "–" if value is None else format(value, spec)


def summary_markdown(evaluation: dict[str, Any]) -> str:
    """The human-readable report: metrics beside baselines, edges with intervals, calibration,
    and the rows every number was computed on."""
    ctx = evaluation["context"]
    crit = evaluation["criteria"]
    lines = [
        "# Walk-forward evaluation",
        "",
        f"Rows: {evaluation['rows']:,} test rows, {evaluation['start']} → {evaluation['end']}, "
        f"series {', '.join(evaluation['series'])}. Horizon h={ctx['horizon']}, W={ctx['window']}, "
        f"label {ctx['label']}.",
        "Costs (bps per unit of position change): "
        + ", ".join(f"{k} {v:g}" for k, v in ctx["cost_bps"].items())
        + f". Metric rules: {ctx['metric_rules']}.",
        "",
        "| predictor | dir acc | IC | rank IC | Sharpe | max DD | hit rate | turnover |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in evaluation["models"].items():
        o = entry["overall"]
        lines.append(
            f"| {name} | {_num(o['directional_accuracy'])} | {_num(o['ic'])} | {_num(o['rank_ic'])} | "
            f"{_num(o['sharpe'], '.2f')} | {_num(o['max_drawdown'], '.3f')} | {_num(o['hit_rate'])} | "
            f"{_num(o['turnover'], '.3f')} |"
        )
    level = f"{crit['level']:.0%}"
    lines += [
        "",
        f"## Edges of the model over each baseline ({level} block bootstrap over time, "
        f"blocks of {crit['block']} timestamps, {crit['reps']} resamples; same rows as above)",
        "",
        "| baseline | accuracy edge | interval | rank-IC edge | interval |",
        "|---|---|---|---|---|",
    ]
    for name, edge in crit["accuracy_edge"].items():
        ric = crit["rank_ic_edge"][name]
        lines.append(
            f"| {name} | {_num(edge['edge'], '+.4f')} | "
            f"[{_num(edge['low'], '+.4f')}, {_num(edge['high'], '+.4f')}] "
            f"| {_num(ric['edge'], '+.4f')} | [{_num(ric['low'], '+.4f')}, {_num(ric['high'], '+.4f')}] |"
        )
    ric = crit["rank_ic"]
    lines += [
        "",
        f"Model rank IC {_num(ric['value'])}, {level} interval [{_num(ric['low'])}, {_num(ric['high'])}].",
    ]
    control = evaluation.get("control")
    if control:
        acc, cric = control["accuracy_minus_label_blind"], control["rank_ic"]
        lines.append(
            f"Shuffled-label control at chance: {control['at_chance']} (accuracy minus a label-blind caller "
            f"{_num(acc['edge'], '+.4f')} [{_num(acc['low'], '+.4f')}, {_num(acc['high'], '+.4f')}], rank IC "
            f"{_num(cric['edge'], '+.4f')} [{_num(cric['low'], '+.4f')}, {_num(cric['high'], '+.4f')}], "
            f"{control['level']:.0%} intervals)."
        )
    lines += [
        "",
        "## Folds",
        "",
        "| fold | start | end | train rows | test rows | series | not scored |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in evaluation["folds"]:
        untested = ", ".join(f"{g}: {n}" for g, n in f["untested"].items()) or "–"
        lines.append(
            f"| {f['fold']} | {f['start']} | {f['end']} | {f['train_rows']:,} | {f['test_rows']:,} | "
            f"{', '.join(f['series'])} | {untested} |"
        )
    cal = evaluation.get("calibration")
    if cal:
        lines += [
            "",
            f"## Calibration of prob_up ({cal['how']}; {cal['rows']:,} rows)",
            "",
            f"Brier score {cal['brier']:.4f} against {cal['brier_base_rate']:.4f} for the base rate "
            f"{cal['base_rate']:.3f}. Isotonic map with {cal['knots']} knots.",
            "",
            "| predicted | observed | rows |",
            "|---|---|---|",
            *(f"| {r['predicted']:.3f} | {r['observed']:.3f} | {r['rows']:,} |" for r in cal["reliability"]),
            "",
            f"No-trade band: |score| > {cal['band']['threshold']:.4f} (the {cal['band']['quantile']:.0%} "
            f"quantile), chosen on the walk-forward rows; its Sharpe there (in-sample for the band) "
            f"{_num(cal['band']['sharpe_in_sample'], '.2f')}.",
        ]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
