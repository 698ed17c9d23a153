"""The promotion gate: a model serves only after it has earned it, with its numbers recorded.

Two questions, one answer each:

* **A first champion** (no ``champion`` alias yet) must beat, out of sample on the walk-forward
  test rows, always-long, persistence and its own shuffled-label control on directional accuracy,
  and its rank IC's block-bootstrap interval must lie above 0 (the numbers come from
  ``evaluation.criteria``, computed at training time on row level). Beating always-long's Sharpe
  after costs is an optional extra (``GateConfig.gate_on_sharpe``). A model that fails stays
  challenger; only ``tradeloop models promote`` (recorded as manual) can serve it.
* **A challenger against the champion** is compared fold by fold on the same walk-forward windows.
  Stored folds are compared only when both evaluations were made under the same context (horizon,
  W, cost model, label definition, feature spec version, metric rules, series); otherwise the
  champion's own artifacts are re-scored on the challenger's rows (:mod:`training.rescore`) or the
  pair is refused with the reason. For each gated metric, a fold where either side is undefined
  or NaN is not comparable (never a win); over the comparable folds the challenger must beat the
  champion by the margin on average and on at least half of them.

Only MLflow's "no such alias" means "no champion": any other registry failure raises
:class:`~tradeloop.errors.ModelNotReady` out of :func:`register_and_gate` before anything moves.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeloop.bundle import verify_bundle
from tradeloop.registry import CHAMPION, ModelVersionInfo, Registry

if TYPE_CHECKING:
    from training.job import TrainResult

__all__ = ["CONTEXT_KEYS", "Decision", "GateConfig", "decide", "first_champion", "register_and_gate"]

# What must match before two stored evaluations' folds say anything about each other.
CONTEXT_KEYS = ("horizon", "window", "label", "spec_version", "cost_bps", "metric_rules", "series")
FIRST_CHAMPION_BASELINES = ("always_long", "persistence", "shuffled_control")


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Margins a challenger must clear against the champion, and what a first champion needs."""

    margins: dict[str, float] = field(
        # rank IC, not Pearson IC: a few heavy-tailed returns decide Pearson's r on market data
        default_factory=lambda: {"directional_accuracy": 0.005, "rank_ic": 0.0, "sharpe": 0.0}
    )
    min_win_share: float = 0.5  # share of comparable folds the challenger must win by the margin
    gate_on_sharpe: bool = False  # first champion must also beat always-long's Sharpe after costs
    edge_interval: bool = False  # first champion's accuracy edges need intervals above 0, not points


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
    checks: list[dict[str, Any]] = field(default_factory=list)

    def tags(self) -> dict[str, str]:
        """Flat ``gate.*`` tags for MLflow (values as text)."""
        out = {"gate.decision": "promote" if self.promote else "keep", "gate.reason": self.reason}
        out["gate.basis"] = self.basis
        out["gate.folds"] = ",".join(map(str, self.folds))
        for side, numbers in (("challenger", self.challenger), ("champion", self.champion)):
            for metric, value in numbers.items():
                out[f"gate.{side}.{metric}"] = _fmt(value, ".6g")
        for metric, margin in self.margins.items():
            out[f"gate.margin.{metric}"] = f"{margin:g}"
        for check in self.checks:
            out[f"gate.check.{check['name']}"] = ("pass " if check["passed"] else "fail ") + check["detail"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The reasoning, one line per check, for the CLI and the job summary."""
        head = f"gate ({self.basis}): {'PROMOTE' if self.promote else 'KEEP'} — {self.reason}"
        return [head, *(f"  {'pass' if c['passed'] else 'FAIL'}  {c['detail']}" for c in self.checks)]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any, spec: str = ".4f") -> str:
    return format(value, spec) if _finite(value) else "undefined"


def first_champion(evaluation: dict[str, Any], config: GateConfig | None = None) -> Decision:
    """Judge a would-be first champion on its own out-of-sample criteria (no champion exists)."""
    config = config or GateConfig()
    crit = evaluation.get("criteria")
    margins = dict(config.margins)
    basis = "first champion: out-of-sample criteria"
    if not crit:
        return Decision(
            False, "not comparable: the bundle has no out-of-sample criteria", {}, {}, [], margins, basis
        )
    checks: list[dict[str, Any]] = []
    level = f"{crit['level']:.0%}"
    accuracy = crit["accuracy"]
    for baseline in FIRST_CHAMPION_BASELINES:
        edge = crit["accuracy_edge"].get(baseline, {})
        value = edge.get("low") if config.edge_interval else edge.get("edge")
        passed = _finite(value) and value > 0
        checks.append(
            {
                "name": f"accuracy_vs_{baseline}",
                "passed": passed,
                "detail": f"directional accuracy {_fmt(accuracy.get('model'))} vs {baseline} "
                f"{_fmt(accuracy.get(baseline))}: edge {_fmt(edge.get('edge'), '+.4f')} "
                f"[{_fmt(edge.get('low'), '+.4f')}, {_fmt(edge.get('high'), '+.4f')}] "
                f"({level} block bootstrap)",
            }
        )
    ric = crit["rank_ic"]
    checks.append(
        {
            "name": "rank_ic_interval",
            "passed": _finite(ric.get("low")) and ric["low"] > 0,
            "detail": f"rank IC {_fmt(ric.get('value'))} with {level} interval "
            f"[{_fmt(ric.get('low'))}, {_fmt(ric.get('high'))}] must lie above 0",
        }
    )
    sharpe = crit["sharpe"]
    beats = _finite(sharpe.get("model")) and _finite(sharpe.get("always_long"))
    beats = beats and sharpe["model"] > sharpe["always_long"]
    checks.append(
        {
            "name": "sharpe_vs_always_long",
            "passed": beats or not config.gate_on_sharpe,
            "detail": f"Sharpe after costs {_fmt(sharpe.get('model'), '.2f')} vs always-long "
            f"{_fmt(sharpe.get('always_long'), '.2f')} "
            f"({'gated' if config.gate_on_sharpe else 'reported only'})",
        }
    )
    failed = [c["name"] for c in checks if not c["passed"]]
    reason = (
        "first champion: beats always-long, persistence and its shuffled control out of sample"
        if not failed
        else "first champion not earned: fails " + ", ".join(failed)
    )
    numbers = {"directional_accuracy": accuracy.get("model"), "rank_ic": ric.get("value")}
    numbers |= {"rank_ic_low": ric.get("low"), "sharpe": sharpe.get("model")}
    rows = f"{crit['rows']:,} test rows {crit['start']} → {crit['end']}"
    checks.append({"name": "rows", "passed": True, "detail": f"computed on {rows}"})
    return Decision(
        not failed, reason, numbers, {}, [f["fold"] for f in evaluation["folds"]], margins, basis, checks
    )


def context_mismatch(challenger: dict[str, Any], champion: dict[str, Any]) -> str | None:
    """Why two evaluations' stored folds cannot be compared directly, or None when they can."""
    ours, theirs = challenger.get("context"), champion.get("context")
    if not ours or not theirs:
        return "the champion's evaluation records no context (made by an older tradeloop)"
    for key in CONTEXT_KEYS:
        if ours.get(key) != theirs.get(key):
            return f"{key} differs ({theirs.get(key)!r} vs {ours.get(key)!r})"
    return None


def _fold_table(evaluation: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    metrics = {m["fold"]: m for m in evaluation["predictors"]["model"]}
    return {(f["start"], f["end"]): metrics[f["fold"]] for f in evaluation["folds"]}


def compare_folds(
    challenger: dict[str, Any], champion: dict[str, Any], config: GateConfig | None = None, *, basis: str
) -> Decision:
    """Fold-by-fold comparison of two evaluations made on the same windows."""
    config = config or GateConfig()
    margins = dict(config.margins)
    mine, theirs = _fold_table(challenger), _fold_table(champion)
    common = sorted(set(mine) & set(theirs))
    if not common:
        return Decision(False, "not comparable: no common walk-forward window", {}, {}, [], margins, basis)
    checks: list[dict[str, Any]] = []
    ours_mean: dict[str, float | None] = {}
    theirs_mean: dict[str, float | None] = {}
    for metric, margin in margins.items():
        pairs = [
            (mine[k]["fold"], mine[k].get(metric), theirs[k].get(metric))
            for k in common
            if _finite(mine[k].get(metric)) and _finite(theirs[k].get(metric))
        ]
        if not pairs:
            ours_mean[metric] = theirs_mean[metric] = None
            checks.append(
                {"name": metric, "passed": False, "detail": f"{metric}: not comparable on any common fold"}
            )
            continue
        diffs = [a - b for _, a, b in pairs]
        wins = sum(d >= margin for d in diffs)
        mean_diff = sum(diffs) / len(diffs)
        ours_mean[metric] = sum(a for _, a, _ in pairs) / len(pairs)
        theirs_mean[metric] = sum(b for _, _, b in pairs) / len(pairs)
        passed = mean_diff >= margin and wins >= config.min_win_share * len(pairs)
        skipped = len(common) - len(pairs)
        checks.append(
            {
                "name": metric,
                "passed": passed,
                "detail": f"{metric}: challenger {ours_mean[metric]:.4f} "
                f"vs champion {theirs_mean[metric]:.4f}, "
                f"mean paired difference {mean_diff:+.4f} (margin {margin:g}), won {wins}/{len(pairs)} folds"
                + (f"; {skipped} fold(s) not comparable" if skipped else ""),
            }
        )
    failed = [c["name"] for c in checks if not c["passed"]]
    reason = "beats the champion fold by fold on every metric" if not failed else "fails " + ", ".join(failed)
    folds = [mine[k]["fold"] for k in common]
    return Decision(not failed, reason, ours_mean, theirs_mean, folds, margins, basis, checks)


def decide(
    challenger: dict[str, Any], champion: dict[str, Any] | None, config: GateConfig | None = None
) -> Decision:
    """Decide on ``challenger`` against ``champion`` (their bundle manifests' ``evaluation``)."""
    if champion is None:
        return first_champion(challenger, config)
    mismatch = context_mismatch(challenger, champion)
    if mismatch:
        margins = dict((config or GateConfig()).margins)
        return Decision(False, f"not comparable: {mismatch}", {}, {}, [], margins)
    return compare_folds(challenger, champion, config, basis="stored walk-forward folds")


def _rescored(
    champion_dir: Path, champion: dict[str, Any], result: TrainResult, config: GateConfig | None
) -> Decision:
    from training.rescore import rescore

    outcome = rescore(champion_dir, champion, result)
    basis = "champion re-scored on the challenger's windows"
    if isinstance(outcome, str):
        margins = dict((config or GateConfig()).margins)
        return Decision(False, f"not comparable: {outcome}", {}, {}, [], margins, basis)
    return compare_folds(outcome[0], outcome[1], config, basis=basis)


def register_and_gate(
    registry: Registry,
    bundle_dir: Path,
    report_dir: Path | None,
    *,
    promote: bool,
    config: GateConfig | None = None,
    result: TrainResult | None = None,
) -> tuple[ModelVersionInfo, Decision]:
    """Register a bundle as ``challenger``, judge it, record the decision, promote if earned.

    With ``promote`` the ``champion`` alias moves when the gate says so; without it the decision
    is only recorded. ``result`` (the challenger's training run) lets the gate re-score the
    champion when the two evaluations' contexts or windows differ. A registry that fails for any
    reason other than "no champion alias" raises ``ModelNotReady``: nothing is promoted.
    """
    manifest = verify_bundle(bundle_dir)
    params = {"preset": manifest["preset"]["name"], "shuffled_labels": manifest["shuffled_labels"]}
    params |= {f"preset.{k}": v for k, v in manifest["preset"].items()}
    metrics = {
        f"{name}.{key}": value
        for name, overall in manifest["metrics"].items()
        for key, value in overall.items()
        if _finite(value)
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
