"""Hot reload: follow the registry's ``champion`` alias without ever serving a broken model.

Each server process runs one :class:`ChampionWatcher` thread. Every ``interval_s`` it reads the
alias; when it names a version other than the one served, it downloads that bundle beside the
current one, verifies every sha256, opens it, runs one prediction as a self-test and only then
swaps the predictor's reference (in-flight requests finish on the old bundle). A bundle that
fails any step is refused, logged and counted, and remembered so it is not retried every poll;
the old bundle keeps serving. A registry outage is counted and changes nothing.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.predictor.core import Predictor
from tradeloop.errors import TradeloopError
from tradeloop.features import spec
from tradeloop.inference import LoadedBundle, load_bundle, predict
from tradeloop.registry import CHAMPION, Registry

__all__ = ["ChampionWatcher", "self_test"]

log = logging.getLogger("tradeloop.predictor.reload")


def self_test(bundle: LoadedBundle) -> None:
    """One prediction per series the bundle was trained on, from neutral inputs; raises if any
    output is not finite (a model file that loads but cannot run is refused here)."""
    rows = []
    for sid in bundle.series or []:
        symbol, timeframe = sid.split(":")
        asset_class = bundle.cnn_groups.get(symbol)
        if asset_class is None:
            continue
        rows.append([0.0] * len(spec.FEATURE_NAMES) + list(spec.metadata_values(asset_class, timeframe)))
    if not rows:
        raise TradeloopError(f"bundle {bundle.version} lists no series to self-test on")
    features = np.asarray(rows, dtype=np.float32)
    windows = np.zeros((len(rows), bundle.window, len(spec.CHANNELS)), dtype=np.float32)
    out = predict(bundle, windows, features)
    for name in ("prob_up", "expected_return", "score"):
        if not np.isfinite(getattr(out, name)).all():
            raise TradeloopError(f"bundle {bundle.version} self-test gave a non-finite {name}")


class ChampionWatcher:
    """Polls ``champion`` and swaps verified bundles into ``predictor`` (see the module docstring)."""

    def __init__(
        self,
        predictor: Predictor,
        registry: Callable[[], Registry],
        cache_dir: Path,
        *,
        interval_s: float = 10.0,
        threads: int = 1,
        on_event: Callable[[str, str], None] = lambda outcome, version: None,
    ) -> None:
        self.predictor = predictor
        self._registry_factory = registry
        self._registry: Registry | None = None
        self.cache_dir = cache_dir
        self.interval_s = interval_s
        self.threads = threads
        self.on_event = on_event
        self.refused: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _registry_now(self) -> Registry:
        if self._registry is None:
            self._registry = self._registry_factory()
        return self._registry

    def check_once(self) -> str:
        """One poll; returns its outcome: unchanged, loaded, refused, no_champion or registry_error."""
        current = self.predictor.bundle
        try:
            champion = self._registry_now().alias(CHAMPION)
        except TradeloopError as exc:
            log.warning("registry unavailable, still serving %s: %s", current and current.version, exc)
            return self._event("registry_error", current.version if current else "")
        if champion is None:
            return self._event("no_champion", "")
        version = champion.version
        if (current is not None and current.version == version) or version in self.refused:
            return "unchanged"
        target = self.cache_dir / f"v{version}"
        try:
            shutil.rmtree(target, ignore_errors=True)
            path = self._registry_now().download(version, target)
            bundle = load_bundle(path, version=version, threads=self.threads)
            self_test(bundle)
        except TradeloopError as exc:
            if "unavailable" in str(exc) and "registry" in str(exc):
                log.warning("registry unavailable while loading v%s: %s", version, exc)
                return self._event("registry_error", version)
            self.refused.add(version)
            log.error("refused model v%s, still serving %s: %s", version, current and current.version, exc)
            return self._event("refused", version)
        old = self.predictor.swap(bundle)
        log.info("serving model v%s (was %s)", version, old.version if old else "none")
        if old is not None and old.root != bundle.root and old.root.is_relative_to(self.cache_dir):
            shutil.rmtree(
                old.root.parent if old.root.parent != self.cache_dir else old.root, ignore_errors=True
            )
        return self._event("loaded", version)

    def _event(self, outcome: str, version: str) -> str:
        self.on_event(outcome, version)
        return outcome

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # a watcher that dies silently would freeze the model: log and go on
                log.exception("champion watcher poll failed")
                self.on_event("error", "")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="champion-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
