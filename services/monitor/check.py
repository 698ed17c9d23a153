"""One monitor check: drift and live performance against the champion's training reference,
then a decision with hysteresis and cooldown, written out with its numbers.

* **Feature drift**, per series the champion was trained on: the newest ``window_bars`` offline
  feature rows (built and ingested) against the series' reference in ``bundle.json``
  (:mod:`tradeloop.drift`: PSI, KS with autocorrelation-aware p-values and BH correction,
  normalised Wasserstein). **Prediction drift**: the champion's logged ``prob_up`` against its
  out-of-sample reference.
* **Live performance**: logged answers whose h-bar return has been realised, scored like
  training; degraded when the 95% Wilson upper bound of live directional accuracy falls below
  the walk-forward accuracy the bundle recorded (with at least ``min_labelled`` answers).
* **Decision**: a reason (``drift-detected`` / ``performance-degraded``) fires after ``k``
  consecutive breaching checks and not within ``cooldown_s`` of the last trigger. The counters
  live in ``HOME/monitor/state.json``; every check appends its numbers to
  ``HOME/monitor/decisions.jsonl``.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.monitor.live import labelled_predictions, read_prediction_log
from tradeloop.bars.schema import parse_series_id
from tradeloop.bars.store import write_text_atomic
from tradeloop.config import Settings
from tradeloop.drift import DEFAULT_CONSECUTIVE, DEFAULT_WINDOW_BARS, DriftThresholds, breaches, drift
from tradeloop.errors import ModelNotReady
from tradeloop.features import spec
from tradeloop.features.recent import offline_features
from tradeloop.metrics import directional_accuracy, ic
from tradeloop.registry import CHAMPION, Registry

__all__ = ["DRIFT", "PERFORMANCE", "CheckResult", "MonitorConfig", "decide", "run_check", "wilson_upper"]

DRIFT, PERFORMANCE = "drift-detected", "performance-degraded"
MIN_PREDICTIONS = 50  # fewer logged answers than this say nothing about prediction drift


@dataclass(frozen=True)
class MonitorConfig:
    window_bars: int = DEFAULT_WINDOW_BARS
    consecutive: int = DEFAULT_CONSECUTIVE  # k
    cooldown_s: float = 24 * 3600.0
    min_labelled: int = 200
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    mlflow_uri: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """Everything one check measured and decided (JSON via :meth:`to_dict`)."""

    checked_at: str
    champion: str
    series: dict[str, dict[str, Any]]  # per series: drifted, features that breached, top numbers
    predictions: dict[str, Any]
    performance: dict[str, Any]
    breaching: dict[str, bool]  # reason → did this check breach
    consecutive: dict[str, int]
    fired: str | None  # the reason that triggered, if any
    suppressed: str | None  # why a breach did not fire (hysteresis / cooldown)
    horizon: int = 1
    tables: dict[str, Any] = field(default_factory=dict, repr=False)  # series → DriftTable (report)
    reference: dict[str, Any] = field(default_factory=dict, repr=False)  # the champion's references

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in {"tables", "reference"}}

    def payload(self) -> dict[str, Any]:
        """The ``client_payload`` of a dispatch: at most 10 keys."""
        drifted = [s for s, v in self.series.items() if v["drifted"]]
        worst = max((v["max_psi"] for v in self.series.values()), default=0.0)
        return {
            "reason": self.fired,
            "champion_version": self.champion,
            "series": ",".join(drifted)[:200],
            "max_psi": round(worst, 4),
            "drifted_features": sum(len(v["features"]) for v in self.series.values()),
            "prediction_psi": self.predictions.get("psi"),
            "live_accuracy": self.performance.get("accuracy"),
            "baseline_accuracy": self.performance.get("baseline_accuracy"),
            "labelled": self.performance.get("labelled"),
            "checked_at": self.checked_at,
        }


def wilson_upper(successes: float, n: int, z: float = 1.6449) -> float:
    """One-sided 95% Wilson upper bound of a proportion."""
    if n == 0:
        return 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def _champion(settings: Settings, config: MonitorConfig, tmp: Path) -> tuple[str, dict[str, Any]]:
    from tradeloop.bundle import verify_bundle

    registry = Registry(settings, config.mlflow_uri)
    info = registry.alias(CHAMPION)
    if info is None:
        raise ModelNotReady("no champion to monitor: train and promote a model first")
    manifest = verify_bundle(registry.download(info.version, tmp))
    if "reference" not in manifest:
        raise ModelNotReady(
            f"champion v{info.version} carries no drift reference (made by an older tradeloop)"
        )
    return info.version, manifest


def _series_drift(
    settings: Settings, reference: dict[str, Any], config: MonitorConfig
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    names = list(spec.FEATURE_NAMES)
    out, tables = {}, {}
    for sid, ref in sorted(reference["features"]["series"].items()):
        frame = offline_features(settings, *parse_series_id(sid))
        if frame.empty:
            out[sid] = {"drifted": False, "features": [], "max_psi": 0.0, "rows": 0, "note": "no features"}
            continue
        window = frame.tail(config.window_bars)
        table = drift(ref, window[names].to_numpy(np.float64), names)
        found = breaches(table, config.thresholds)
        tables[sid] = table
        psi = table.column("psi")
        out[sid] = {
            "drifted": bool(found.drifted),
            "features": list(found.drifted_features),
            "max_psi": float(np.nanmax(psi)) if np.isfinite(psi).any() else 0.0,
            "rows": len(window),
            "start": str(window["ts"].iloc[0]),
            "end": str(window["ts"].iloc[-1]),
            "top": [
                {
                    "feature": n,
                    "psi": round(float(table[n].psi), 4),
                    "ks_pvalue": float(table[n].ks_pvalue),
                    "wasserstein": round(float(table[n].wasserstein_normalised), 4),
                }
                for n in (names[i] for i in np.argsort(-np.nan_to_num(psi))[:5])
            ],
        }
    return out, tables


def _prediction_drift(
    settings: Settings, version: str, reference: dict[str, Any], config: MonitorConfig
) -> tuple[dict[str, Any], Any]:
    log = read_prediction_log(settings.home / "predictions", version=version)
    # The reference holds one prediction per (series, bar): a bar asked about many times is one
    # answer here too, or a client polling one bar would look like a collapsed distribution.
    named = log["series_id"].astype(bool) & log["as_of"].astype(bool)
    unique = log[named].drop_duplicates(["series_id", "as_of"], keep="last")
    log = pd.concat([unique, log[~named]]).sort_values("logged_at", kind="stable")
    probs = log["prob_up"].to_numpy(np.float64)[-config.window_bars * 10 :]
    if len(probs) < MIN_PREDICTIONS:
        return {
            "drifted": False,
            "rows": len(probs),
            "note": f"fewer than {MIN_PREDICTIONS} logged answers",
        }, None
    table = drift(reference["predictions"], probs[:, None], ["prob_up"])
    found = breaches(table, config.thresholds)
    row = table["prob_up"]
    return {
        "drifted": bool(found.drifted),
        "rows": len(probs),
        "psi": round(float(row.psi), 4),
        "ks_pvalue": float(row.ks_pvalue),
        "wasserstein": round(float(row.wasserstein_normalised), 4),
    }, table


def _performance(
    settings: Settings, version: str, manifest: dict[str, Any], config: MonitorConfig
) -> dict[str, Any]:
    log = read_prediction_log(settings.home / "predictions", version=version)
    labelled = labelled_predictions(settings, log, int(manifest["horizon"]))
    baseline = manifest["metrics"]["model"]
    result: dict[str, Any] = {
        "labelled": len(labelled),
        "baseline_accuracy": baseline.get("directional_accuracy"),
        "baseline_ic": baseline.get("ic"),
        "accuracy": None,
        "ic": None,
        "upper_bound": None,
        "degraded": False,
    }
    if len(labelled) == 0:
        return result
    pred, real = labelled["expected_return"].to_numpy(np.float64), labelled["realised"].to_numpy(np.float64)
    acc = directional_accuracy(pred, real)
    moved = int((real != 0).sum())
    result |= {"accuracy": acc, "ic": ic(pred, real)}
    if acc is not None and moved:
        upper = wilson_upper(acc * moved, moved)
        result["upper_bound"] = upper
        floor = result["baseline_accuracy"]
        result["degraded"] = bool(
            len(labelled) >= config.min_labelled and floor is not None and upper < floor
        )
    return result


def _load_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"consecutive": {}, "last_trigger": None}


def decide(
    breaching: dict[str, bool], state: dict[str, Any], now: datetime, config: MonitorConfig
) -> tuple[str | None, str | None, dict[str, Any]]:
    """(fired reason, why a breach did not fire, next state): k in a row, then cooldown.

    A breaching reason's counter grows by one per check and resets on a clean check; it fires
    when the counter reaches k and the last trigger is at least ``cooldown_s`` old; firing resets
    every counter. Performance degradation is considered before drift.
    """
    state = {"consecutive": dict(state.get("consecutive", {})), "last_trigger": state.get("last_trigger")}
    counts = {r: (state["consecutive"].get(r, 0) + 1 if hit else 0) for r, hit in breaching.items()}
    fired = suppressed = None
    last = state.get("last_trigger")
    cooling = (
        last is not None and (now - datetime.fromisoformat(last["at"])).total_seconds() < config.cooldown_s
    )
    for reason in (PERFORMANCE, DRIFT):
        if not breaching[reason]:
            continue
        if counts[reason] < config.consecutive:
            suppressed = (
                suppressed or f"{reason}: {counts[reason]} of {config.consecutive} consecutive checks"
            )
        elif cooling:
            suppressed = (
                suppressed or f"{reason}: cooldown after the {last['reason']} trigger at {last['at']}"
            )
        elif fired is None:
            fired = reason
    if fired:
        state["last_trigger"] = {"at": now.isoformat(), "reason": fired}
        counts = {r: 0 for r in counts}
    state["consecutive"] = counts
    return fired, suppressed, state


def run_check(
    settings: Settings, config: MonitorConfig | None = None, *, now: datetime | None = None
) -> CheckResult:
    """Measure, decide, persist the counters and the decision record; returns the result."""
    config = config or MonitorConfig()
    now = now or datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        version, manifest = _champion(settings, config, Path(tmp))
    reference = manifest["reference"]
    series, tables = _series_drift(settings, reference, config)
    predictions, pred_table = _prediction_drift(settings, version, reference, config)
    performance = _performance(settings, version, manifest, config)
    if pred_table is not None:
        tables["predictions"] = pred_table
    breaching = {
        DRIFT: any(v["drifted"] for v in series.values()) or bool(predictions["drifted"]),
        PERFORMANCE: bool(performance["degraded"]),
    }
    root = settings.home / "monitor"
    root.mkdir(parents=True, exist_ok=True)
    state = _load_state(root / "state.json")
    fired, suppressed, state = decide(breaching, state, now, config)
    if fired:
        state["last_trigger"]["champion"] = version
    counts = state["consecutive"]
    write_text_atomic(json.dumps(state, indent=2), root / "state.json")
    result = CheckResult(
        checked_at=now.isoformat(),
        champion=version,
        series=series,
        predictions=predictions,
        performance=performance,
        breaching=breaching,
        consecutive=counts,
        fired=fired,
        suppressed=suppressed,
        horizon=int(manifest["horizon"]),
        tables=tables,
        reference=reference,
    )
    with (root / "decisions.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(result.to_dict(), default=str) + "\n")
    return result
