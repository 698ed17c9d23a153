"""The promotion gate: a challenger replaces the champion only if it wins on the same windows.

Both bundles carry their per-fold walk-forward metrics (``bundle.json`` → ``evaluation``). The
gate compares the folds whose window (start, end) and series set are identical in both. A retrain
on new data has other windows: then, given the challenger's training result, the champion's own
artifacts are re-scored on the challenger's test rows after the champion's data
(:mod:`training.rescore`), and the two are compared on exactly those rows. With neither, the
bundles are not comparable and nothing is promoted. The challenger must beat the
champion's mean over the common folds by each configured margin. Every decision, with its numbers,
is returned as flat tags for the registry.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradeloop.bundle import verify_bundle
from tradeloop.registry import CHAMPION, ModelVersionInfo, Registry

if TYPE_CHECKING:
    from training.job import TrainResult

__all__ = ["Decision", "GateConfig", "decide", "register_and_gate"]


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Margins the challenger must clear on every metric (mean over the common folds)."""

    margins: dict[str, float] = field(
        default_factory=lambda: {"directional_accuracy": 0.005, "ic": 0.0, "sharpe": 0.0}
    )


@dataclass(frozen=True)
class Decision:
    """Whether to promote, why, and the numbers behind it."""

    promote: bool
    reason: str
    challenger: dict[str, float | None]
    champion: dict[str, float | None]
    folds: list[int]
    margins: dict[str, float]
    basis: str = "stored walk-forward folds"

    def tags(self) -> dict[str, str]:
        """Flat ``gate.*`` tags for MLflow (values as text)."""
        out = {"gate.decision": "promote" if self.promote else "keep", "gate.reason": self.reason}
        out["gate.basis"] = self.basis
        out["gate.folds"] = ",".join(map(str, self.folds))
        for side, numbers in (("challenger", self.challenger), ("champion", self.champion)):
            for metric, value in numbers.items():
                out[f"gate.{side}.{metric}"] = "none" if value is None else f"{value:.6g}"
        for metric, margin in self.margins.items():
            out[f"gate.margin.{metric}"] = f"{margin:g}"
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _windows(evaluation: dict[str, Any]) -> dict[tuple[str, str, tuple[str, ...]], dict[str, Any]]:
    series = tuple(sorted(evaluation["series"]))
    metrics = {m["fold"]: m for m in evaluation["model_folds"]}
    return {
        (f["start"], f["end"], series): metrics[f["fold"]] | {"fold": f["fold"]} for f in evaluation["folds"]
    }


def _mean(folds: list[dict[str, Any]], metric: str) -> float | None:
    values = [f[metric] for f in folds if f.get(metric) is not None]
    return float(np.mean(values)) if values else None


def decide(
    challenger: dict[str, Any], champion: dict[str, Any] | None, config: GateConfig | None = None
) -> Decision:
    """Decide on ``challenger`` against ``champion`` (their bundle manifests' ``evaluation``)."""
    config = config or GateConfig()
    margins = dict(config.margins)
    if champion is None:
        ours = list(_windows(challenger).values())
        numbers = {m: _mean(ours, m) for m in margins}
        return Decision(True, "no champion yet", numbers, {}, [f["fold"] for f in ours], margins)
    mine, theirs = _windows(challenger), _windows(champion)
    common = sorted(set(mine) & set(theirs))
    if not common:
        return Decision(False, "not comparable: no common walk-forward window", {}, {}, [], margins)
    ours = [mine[k] for k in common]
    other = [theirs[k] for k in common]
    a = {m: _mean(ours, m) for m in margins}
    b = {m: _mean(other, m) for m in margins}
    failed = []
    for metric, margin in margins.items():
        if a[metric] is None or (b[metric] is not None and a[metric] < b[metric] + margin):
            failed.append(f"{metric} {_fmt(a[metric])} < {_fmt(b[metric])} + {margin:g}")
    reason = "beats the champion on every metric" if not failed else "; ".join(failed)
    return Decision(not failed, reason, a, b, [f["fold"] for f in ours], margins)


def _rescored(
    champion_dir: Path, champion: dict[str, Any], result: TrainResult, config: GateConfig | None
) -> Decision:
    from training.rescore import rescore

    outcome = rescore(champion_dir, champion, result, cost_bps=result.prepared.request.preset.cost_bps)
    basis = "champion re-scored on the challenger's windows"
    if isinstance(outcome, str):
        margins = dict((config or GateConfig()).margins)
        return Decision(False, f"not comparable: {outcome}", {}, {}, [], margins, basis)
    decision = decide(outcome[0], outcome[1], config)
    return Decision(
        decision.promote,
        decision.reason,
        decision.challenger,
        decision.champion,
        decision.folds,
        decision.margins,
        basis,
    )


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def register_and_gate(
    registry: Registry,
    bundle_dir: Path,
    report_dir: Path | None,
    *,
    promote: bool,
    config: GateConfig | None = None,
    result: TrainResult | None = None,
) -> tuple[ModelVersionInfo, Decision]:
    """Register a bundle as ``challenger``, judge it against the champion, record the decision.

    With ``promote`` the ``champion`` alias moves when the gate says so; without it the decision
    is only recorded (a dry run that still leaves its numbers on the version). ``result`` (the
    challenger's training run) lets the gate re-score the champion when their windows differ.
    """
    manifest = verify_bundle(bundle_dir)
    params = {"preset": manifest["preset"]["name"], "shuffled_labels": manifest["shuffled_labels"]}
    params |= {f"preset.{k}": v for k, v in manifest["preset"].items()}
    metrics = {
        f"{name}.{key}": value
        for name, overall in manifest["metrics"].items()
        for key, value in overall.items()
        if isinstance(value, int | float) and value is not None
    }
    version = registry.register(
        bundle_dir,
        params=params,
        metrics=metrics,
        report=report_dir,
        tags={"data_hash": manifest["data"]["hash"]},
    )
    champion = registry.alias(CHAMPION)
    if champion is None:
        decision = decide(manifest["evaluation"], None, config)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            champion_dir = registry.download(champion.version, Path(tmp))
            theirs = verify_bundle(champion_dir)
            decision = decide(manifest["evaluation"], theirs["evaluation"], config)
            if not decision.folds and result is not None:
                decision = _rescored(champion_dir, theirs, result, config)
    tags = decision.tags() | {"gate.champion_version": champion.version if champion else "none"}
    registry.record(version.version, tags | {"gate.applied": str(bool(promote and decision.promote)).lower()})
    if promote and decision.promote:
        registry.promote(version.version, reason=decision.reason)
    return registry.get(version.version), decision
