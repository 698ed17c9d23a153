"""One prediction service per server process: predictor + champion watcher + log + metrics.

Both engines (KServe, Ray Serve) build a :class:`PredictionService` and call :meth:`infer`, from
a worker thread or, for small requests, from KServe's event loop (``kserve_app`` says why; it is
safe from any thread); it decodes nothing itself — the front end passes a decoded
:class:`~services.predictor.protocol.Request` — and records metrics and the prediction log for
every answer, whatever the protocol. Errors stay ``tradeloop.errors`` types until the front end
maps them with ``http_status`` / ``grpc_code``.

Per request it adds only what it must: the labelled metric series are looked up once and kept,
per-row values are recorded in one pass (:func:`~services.predictor.metrics.observe_many`), and
the inputs' digests are computed only when the prediction log is on (they exist for it).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.predictor.core import DEFAULT_MAX_ROWS, Answer, Predictor
from services.predictor.metrics import observe_many, serving_metrics
from services.predictor.predlog import PredictionLog
from services.predictor.protocol import Request
from services.predictor.reload import ChampionWatcher
from tradeloop.config import Settings
from tradeloop.errors import TradeloopError, http_status
from tradeloop.inference.online import max_age_setting

__all__ = ["PredictionService", "ServiceConfig"]

log = logging.getLogger("tradeloop.predictor")


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of a serving process (CLI options and environment)."""

    home: Path
    mlflow_uri: str | None = None
    max_feature_age: float | None = None  # None: per-timeframe default; 0: off
    max_rows: int = DEFAULT_MAX_ROWS
    poll_s: float = 10.0
    log_predictions: bool = True
    threads: int = 1


class PredictionService:
    """Answers requests and keeps the champion fresh (see the module docstring)."""

    def __init__(self, config: ServiceConfig) -> None:
        from tradeloop.feature_store import OnlineReader, open_store
        from tradeloop.registry import Registry

        self.config = config
        settings = Settings.load(config.home)
        self.metrics = serving_metrics()
        self.predictor = Predictor(
            lambda: OnlineReader(open_store(settings)),
            max_age=max_age_setting(config.max_feature_age),
            max_rows=config.max_rows,
            digest_inputs=config.log_predictions,
        )
        self._stages = {
            stage: self.metrics.stage_seconds.labels(stage=stage)
            for stage in ("features", "cnn", "xgb", "total")
        }
        self._counters: dict[tuple[str, str, int, str], Any] = {}
        self._cache = tempfile.TemporaryDirectory(prefix="tradeloop-bundles-")
        self.watcher = ChampionWatcher(
            self.predictor,
            lambda: Registry(settings, config.mlflow_uri),
            Path(self._cache.name),
            interval_s=config.poll_s,
            threads=config.threads,
            on_event=self._on_reload,
        )
        self.log = (
            PredictionLog(
                settings.home / "predictions",
                on_count=lambda outcome, n: self.metrics.log_records.labels(outcome=outcome).inc(n),
            )
            if config.log_predictions
            else None
        )

    def _on_reload(self, outcome: str, version: str) -> None:
        if outcome != "unchanged":
            self.metrics.reloads.labels(outcome=outcome).inc()
        if outcome == "loaded":
            self.metrics.set_model(version)

    def start(self) -> None:
        """Load the champion now (if any) and keep polling for a new one."""
        self.watcher.check_once()
        self.watcher.start()

    def stop(self) -> None:
        """Stop polling and flush the prediction log (call on SIGTERM)."""
        self.watcher.stop()
        if self.log is not None:
            self.log.close()
        self._cache.cleanup()

    def ready(self) -> bool:
        return self.predictor.ready()

    @property
    def version(self) -> str:
        bundle = self.predictor.bundle
        return bundle.version if bundle else "none"

    def infer(self, request: Request, *, route: str, protocol: str) -> Answer:
        """Answer ``request``; records metrics and the log. Raises tradeloop errors unchanged."""
        try:
            if request.symbols is not None:
                answer = self.predictor.predict_series(request.symbols, request.timeframes or [])
            else:
                answer = self.predictor.predict_rows(request.window, request.features)  # type: ignore[arg-type]
        except TradeloopError as exc:
            self.count(route, protocol, http_status(exc))
            raise
        except Exception:
            self.count(route, protocol, 500)
            raise
        self.count(route, protocol, 200, answer.model_version)
        for stage, seconds in answer.stages_s.items():
            child = self._stages.get(stage)
            if child is None:
                child = self._stages[stage] = self.metrics.stage_seconds.labels(stage=stage)
            child.observe(seconds)
        ages = answer.feature_age_s
        observe_many(self.metrics.feature_age_seconds, ages[np.isfinite(ages)])
        observe_many(self.metrics.prob_up, answer.prob_up)
        if self.log is not None:
            self.log.submit(answer)
        return answer

    def count(self, route: str, protocol: str, code: int, version: str | None = None) -> None:
        key = (route, protocol, code, version or self.version)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.requests.labels(
                route=route, protocol=protocol, code=str(code), model_version=key[3]
            )
        counter.inc()
