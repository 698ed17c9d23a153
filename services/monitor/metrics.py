"""Prometheus gauges of the monitor (``tradeloop monitor serve`` exposes them on ``/metrics``).

``tradeloop_drift_detected{series}`` is what the chart's drift alert and dashboard read.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge

from services.monitor.check import CheckResult

__all__ = ["publish"]

_lock = threading.Lock()
_gauges: dict[str, Gauge | Counter] = {}


def _metric(kind: type, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge | Counter:
    with _lock:
        if name not in _gauges:
            _gauges[name] = kind(name, doc, list(labels))
        return _gauges[name]


def publish(result: CheckResult) -> None:
    """Set every gauge from one check's numbers."""
    detected = _metric(Gauge, "tradeloop_drift_detected", "1 when the series' features drifted.", ("series",))
    psi = _metric(
        Gauge, "tradeloop_drift_psi", "PSI of a feature against its reference.", ("series", "feature")
    )
    ks = _metric(Gauge, "tradeloop_drift_ks_pvalue", "KS p-value (before correction).", ("series", "feature"))
    w1 = _metric(
        Gauge, "tradeloop_drift_wasserstein", "Wasserstein-1 / reference std.", ("series", "feature")
    )
    for sid, entry in result.series.items():
        detected.labels(series=sid).set(1.0 if entry["drifted"] else 0.0)  # type: ignore[union-attr]
        table = result.tables.get(sid)
        if table is None:
            continue
        for row in table.features:
            psi.labels(series=sid, feature=row.name).set(row.psi)  # type: ignore[union-attr]
            ks.labels(series=sid, feature=row.name).set(row.ks_pvalue)  # type: ignore[union-attr]
            w1.labels(series=sid, feature=row.name).set(row.wasserstein_normalised)  # type: ignore[union-attr]
    pred = _metric(Gauge, "tradeloop_prediction_drift_psi", "PSI of logged prob_up against its reference.")
    if "psi" in result.predictions:
        pred.set(result.predictions["psi"])  # type: ignore[union-attr]
    live = _metric(Gauge, "tradeloop_live_accuracy", "Directional accuracy of labelled live predictions.")
    if result.performance.get("accuracy") is not None:
        live.set(result.performance["accuracy"])  # type: ignore[union-attr]
    labelled = _metric(Gauge, "tradeloop_live_labelled", "Live predictions whose return is known.")
    labelled.set(result.performance["labelled"])  # type: ignore[union-attr]
    streak = _metric(
        Gauge, "tradeloop_monitor_consecutive_breaches", "Breaching checks in a row.", ("reason",)
    )
    for reason, count in result.consecutive.items():
        streak.labels(reason=reason).set(count)  # type: ignore[union-attr]
    checks = _metric(Counter, "tradeloop_monitor_checks", "Monitor checks by outcome.", ("outcome",))
    checks.labels(outcome=result.fired or "no_trigger").inc()  # type: ignore[union-attr]
