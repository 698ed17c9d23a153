"""The predictor both front ends wrap: the current bundle, the online store, one answer shape.

:class:`Predictor` is plain Python. It holds the loaded bundle behind one reference that
:meth:`Predictor.swap` replaces atomically (a request reads the reference once, so in-flight
requests finish on the bundle they started with), reads online features with one store round
trip per request, and returns an :class:`Answer` with per-stage timings. Every error is a
``tradeloop.errors`` type; front ends map them with ``tradeloop.errors.http_status`` /
``grpc_code`` and never build their own. The inputs' digests (:func:`inputs_digest`) are for the
prediction log: a predictor built with ``digest_inputs=False`` (a server with the log off) leaves
``Answer.digests`` empty instead of hashing every row.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tradeloop.errors import InvalidInput, ModelNotReady, RequestTooLarge, TradeloopError
from tradeloop.feature_store import OnlineReader
from tradeloop.inference import LoadedBundle, predict
from tradeloop.inference.online import series_ids, series_inputs

__all__ = ["DEFAULT_MAX_ROWS", "Answer", "Predictor", "inputs_digest"]


def inputs_digest(window: np.ndarray, features: np.ndarray) -> list[str]:
    """Per row, the first 16 hex digits of sha256 over its float32 window and feature bytes."""
    w = np.ascontiguousarray(window, dtype=np.float32)
    f = np.ascontiguousarray(features, dtype=np.float32)
    return [hashlib.sha256(w[i].tobytes() + f[i].tobytes()).hexdigest()[:16] for i in range(len(f))]


DEFAULT_MAX_ROWS = 1000  # rows per request before it is refused as too large (413)


@dataclass(frozen=True)
class Answer:
    """One response: per-row outputs in request order, plus where they came from."""

    prob_up: np.ndarray  # float32
    expected_return: np.ndarray  # float32
    signal: np.ndarray  # int8
    model_version: str
    as_of: list[str]  # ISO time of the newest bar behind each row ("" for caller-supplied rows)
    feature_age_s: np.ndarray  # float32, NaN for caller-supplied rows
    series: list[str]  # series id per row ("" for caller-supplied rows)
    digests: list[str]  # per row, sha256 prefix of the inputs the model saw; [] when not computed
    stages_s: dict[str, float] = field(default_factory=dict)  # features, cnn, xgb, total

    def rows(self) -> list[dict[str, Any]]:
        """The v1 (JSON) shape: one dict per row."""
        return [
            {
                "prob_up": float(self.prob_up[i]),
                "expected_return": float(self.expected_return[i]),
                "signal": int(self.signal[i]),
                "model_version": self.model_version,
                "as_of": self.as_of[i],
                "feature_age_s": None if np.isnan(self.feature_age_s[i]) else float(self.feature_age_s[i]),
            }
            for i in range(len(self.prob_up))
        ]


class Predictor:
    """Answers prediction requests with the current bundle; safe to call from many threads."""

    def __init__(
        self,
        reader_factory: Callable[[], OnlineReader] | None,
        *,
        max_age: float | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        digest_inputs: bool = True,
    ) -> None:
        self._reader_factory = reader_factory
        self._reader: OnlineReader | None = None
        self._reader_lock = threading.Lock()
        self._bundle: LoadedBundle | None = None
        self.max_age = max_age
        self.max_rows = max_rows
        self._clock = clock
        self.digest_inputs = digest_inputs

    # -- the bundle ------------------------------------------------------------------------------
    @property
    def bundle(self) -> LoadedBundle | None:
        return self._bundle

    def swap(self, bundle: LoadedBundle) -> LoadedBundle | None:
        """Serve ``bundle`` from now on (one reference assignment); returns the one it replaced."""
        old, self._bundle = self._bundle, bundle
        return old

    def _current(self) -> LoadedBundle:
        bundle = self._bundle
        if bundle is None:
            raise ModelNotReady("no model loaded yet: the registry has no champion, or it failed to load")
        return bundle

    # -- the online store ------------------------------------------------------------------------
    def reader(self) -> OnlineReader:
        if self._reader_factory is None:
            raise ModelNotReady("no online feature store is configured")
        with self._reader_lock:
            if self._reader is None:
                try:
                    self._reader = self._reader_factory()
                except TradeloopError:
                    raise
                except Exception as exc:
                    raise ModelNotReady(
                        f"online feature store unavailable: {type(exc).__name__}: {exc}"
                    ) from exc
            return self._reader

    def ready(self) -> bool:
        """A bundle is loaded and the online store answers."""
        if self._bundle is None:
            return False
        try:
            self.reader()
        except TradeloopError:
            return False
        return True

    # -- requests --------------------------------------------------------------------------------
    def _check_size(self, n: int) -> None:
        if n == 0:
            raise InvalidInput("symbol", "N = 0: a request needs at least one row")
        if n > self.max_rows:
            raise RequestTooLarge(
                "rows", f"{n} rows exceed this server's limit of {self.max_rows} per request"
            )

    def predict_series(self, symbols: Sequence[str], timeframes: Sequence[str]) -> Answer:
        """Predictions for named series from their online features."""
        t0 = time.perf_counter()
        self._check_size(len(symbols))
        ids = series_ids(symbols, timeframes)
        bundle = self._current()
        try:
            rows = self.reader().read(ids)
        except TradeloopError:
            raise
        except Exception as exc:
            raise ModelNotReady(f"online feature store failed: {type(exc).__name__}: {exc}") from exc
        inputs = series_inputs(rows, max_age=self.max_age, now=self._clock())
        t1 = time.perf_counter()
        out = predict(bundle, inputs.windows, inputs.features)
        t2 = time.perf_counter()
        return Answer(
            prob_up=out.prob_up,
            expected_return=out.expected_return,
            signal=out.signal,
            model_version=bundle.version,
            as_of=[t.isoformat() for t in inputs.as_of],
            feature_age_s=inputs.age_s.astype(np.float32),
            series=ids,
            digests=inputs_digest(inputs.windows, inputs.features) if self.digest_inputs else [],
            stages_s={"features": t1 - t0, "cnn": out.cnn_s, "xgb": out.xgb_s, "total": t2 - t0},
        )

    def predict_rows(self, window: np.ndarray, features: np.ndarray) -> Answer:
        """Predictions for caller-supplied windows and feature rows (no store read, no age)."""
        t0 = time.perf_counter()
        n = len(features) if hasattr(features, "__len__") else 0
        self._check_size(n)
        bundle = self._current()
        out = predict(bundle, window, features)
        t1 = time.perf_counter()
        return Answer(
            prob_up=out.prob_up,
            expected_return=out.expected_return,
            signal=out.signal,
            model_version=bundle.version,
            as_of=[""] * n,
            feature_age_s=np.full(n, np.nan, dtype=np.float32),
            series=[""] * n,
            digests=inputs_digest(window, features) if self.digest_inputs else [],
            stages_s={"features": 0.0, "cnn": out.cnn_s, "xgb": out.xgb_s, "total": t1 - t0},
        )
