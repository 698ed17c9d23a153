"""Prometheus metrics of the predictor, shared by both engines (``prometheus-client``).

Names follow Prometheus conventions with units; they live in the default registry so KServe's
own ``/metrics`` exposes them next to its server metrics, and the Ray Serve app serves the same
registry. Created once per process (:func:`serving_metrics`).

:func:`observe_many` records a request's per-row values (ages, probabilities) in one pass; one
``observe`` per row cost ~5 µs each (two locked writes per value once Feast has switched
``prometheus_client`` to its multiprocess files), a millisecond for 100 rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

__all__ = ["ServingMetrics", "observe_many", "serving_metrics"]

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class ServingMetrics:
    requests: Counter
    stage_seconds: Histogram
    feature_age_seconds: Histogram
    model_info: Gauge
    reloads: Counter
    prob_up: Histogram
    log_records: Counter

    def set_model(self, version: str) -> None:
        """Exactly one ``tradeloop_model_info`` series is 1: the version being served."""
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every v in ``values``: the same bucket counts and sum, with one
    write per non-empty bucket. Falls back to per-value ``observe`` for one value, or where this
    ``prometheus_client`` lacks the histogram's bucket fields."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if len(values) < 2 or bounds is None or buckets is None or total is None:
        for value in values.tolist():
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose bound is >= it; NaN in none, sum in total.
    where = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(where[where < len(bounds)], minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(values.sum()))


_lock = threading.Lock()
_metrics: ServingMetrics | None = None


def serving_metrics() -> ServingMetrics:
    """The process's metrics (registered on first use)."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = ServingMetrics(
                requests=Counter(
                    "tradeloop_requests",
                    "Prediction requests by route, protocol, status code and model version.",
                    ["route", "protocol", "code", "model_version"],
                ),
                stage_seconds=Histogram(
                    "tradeloop_stage_duration_seconds",
                    "Time per prediction stage (features, cnn, xgb, total).",
                    ["stage"],
                    buckets=_LATENCY_BUCKETS,
                ),
                feature_age_seconds=Histogram(
                    "tradeloop_feature_age_seconds",
                    "Age of the online features behind each predicted row.",
                    buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400),
                ),
                model_info=Gauge(
                    "tradeloop_model_info", "The model version being served (value 1).", ["version"]
                ),
                reloads=Counter("tradeloop_reloads", "Champion reload attempts by outcome.", ["outcome"]),
                prob_up=Histogram(
                    "tradeloop_prob_up",
                    "Distribution of predicted prob_up.",
                    buckets=tuple(i / 20 for i in range(1, 20)),
                ),
                log_records=Counter(
                    "tradeloop_prediction_log_records", "Prediction-log records by outcome.", ["outcome"]
                ),
            )
        return _metrics
