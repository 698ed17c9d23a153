"""A verified, loaded bundle: ONNX Runtime sessions, XGBoost boosters and the serving maps.

:func:`load_bundle` checks every sha256 (``tradeloop.bundle.verify_bundle``) before it opens a
file, and turns any failure to open one (a truncated ONNX graph, a corrupt booster, a missing
calibration) into :class:`~tradeloop.errors.BundleIntegrityError`, so a caller keeps whatever it
served before. Sessions are tuned for small inputs: one intra-op thread by default (a 1×64×7
window costs ~20 µs; more threads only contend with the server's own).

What every request would otherwise work out again is derived once, when the bundle is built:
the models indexed by :func:`~tradeloop.inference.inputs.group_codes`' codes, the calibration and
band as checked arrays (:class:`~tradeloop.calibration.ScoreMaps`; a malformed one refuses the
bundle here rather than failing every request) and each booster's fast dense predictor
(:mod:`tradeloop.inference.booster`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradeloop.bars.schema import ASSET_CLASSES
from tradeloop.bundle import verify_bundle
from tradeloop.calibration import ScoreMaps
from tradeloop.errors import BundleIntegrityError
from tradeloop.features import spec
from tradeloop.inference.booster import dense_predictor
from tradeloop.inference.inputs import TF_GROUPS, XGB_GROUPS, xgb_feature_names

__all__ = ["LoadedBundle", "load_bundle", "onnx_scores", "onnx_session"]


@dataclass(frozen=True)
class LoadedBundle:
    """Everything one prediction needs, immutable once loaded (swap whole bundles, never parts)."""

    root: Path
    manifest: dict[str, Any]
    version: str
    window: int
    horizon: int
    cnn: dict[str, Any]  # asset class → onnxruntime.InferenceSession
    xgb: dict[str, Any]  # timeframe group → xgboost.Booster
    calibration: dict[str, Any]
    band: dict[str, Any]
    cnn_groups: dict[str, str] = field(default_factory=dict)  # symbol → asset class (training's)
    xgb_groups: dict[str, str] = field(default_factory=dict)  # timeframe → group
    # Derived once (``__post_init__``): what predict looks up per request.
    maps: ScoreMaps = field(init=False, repr=False, compare=False)  # calibration and band, checked
    cnn_by_class: tuple[Any, ...] = field(
        init=False, repr=False, compare=False
    )  # ASSET_CLASSES order; None: no CNN
    xgb_by_group: tuple[Callable[[np.ndarray], np.ndarray] | None, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # BundleIntegrityError here (a malformed calibration or band) refuses the bundle at load.
        object.__setattr__(self, "maps", ScoreMaps.from_manifest(self.calibration, self.band))
        object.__setattr__(self, "cnn_by_class", tuple(self.cnn.get(c) for c in ASSET_CLASSES))
        predictors = tuple(dense_predictor(self.xgb[g]) if g in self.xgb else None for g in XGB_GROUPS)
        object.__setattr__(self, "xgb_by_group", predictors)

    @property
    def series(self) -> list[str]:
        return list(self.manifest.get("series", []))


def onnx_session(path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with set thread counts (small inputs: 1 thread is fastest)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_scores(session: Any, windows: np.ndarray, batch: int = 8192) -> np.ndarray:
    """CNN scores of (N, W, C) float32 ``windows`` through ONNX Runtime, in batches."""
    if 0 < len(windows) <= batch:
        return session.run(None, {"window": windows})[0]
    out = [session.run(None, {"window": windows[i : i + batch]})[0] for i in range(0, len(windows), batch)]
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def _check_manifest(manifest: dict[str, Any]) -> None:
    expected = {
        "feature_names": list(spec.FEATURE_NAMES),
        "channels": list(spec.CHANNELS),
        "metadata_features": list(spec.METADATA),
        "xgb_features": xgb_feature_names(),
    }
    for key, ours in expected.items():
        if manifest.get(key) != ours:
            raise BundleIntegrityError(f"bundle.json {key} does not match this tradeloop's feature spec")
    for key in ("window", "horizon", "calibration", "band", "models"):
        if key not in manifest:
            raise BundleIntegrityError(f"bundle.json has no {key!r} (made by an older tradeloop?)")
    if not 1 <= int(manifest["window"]) <= spec.WINDOW:
        raise BundleIntegrityError(
            f"bundle window {manifest['window']} exceeds the online window {spec.WINDOW}"
        )
    unknown = set(manifest.get("xgb_groups", {}).values()) - set(TF_GROUPS.values())
    if unknown:
        raise BundleIntegrityError(f"bundle names unknown timeframe groups {sorted(unknown)}")


def load_bundle(path: Path, *, version: str | None = None, threads: int = 1) -> LoadedBundle:
    """Verify and open the bundle at ``path``; :class:`BundleIntegrityError` on anything wrong."""
    import xgboost

    root = Path(path)
    manifest = verify_bundle(root)
    _check_manifest(manifest)
    cnn: dict[str, Any] = {}
    xgb: dict[str, Any] = {}
    try:
        for group, rel in manifest["models"]["cnn"].items():
            cnn[group] = onnx_session(root / rel, threads)
        for group, rel in manifest["models"]["xgb"].items():
            booster = xgboost.Booster()
            booster.load_model(str(root / rel))
            booster.set_param({"nthread": threads})
            xgb[group] = booster
    except Exception as exc:  # any failure to open a model file is the bundle's fault
        raise BundleIntegrityError(f"{root}: cannot open a model file: {type(exc).__name__}: {exc}") from exc
    return LoadedBundle(
        root=root,
        manifest=manifest,
        version=str(version) if version is not None else manifest.get("created", "local"),
        window=int(manifest["window"]),
        horizon=int(manifest["horizon"]),
        cnn=cnn,
        xgb=xgb,
        calibration=manifest["calibration"],
        band=manifest["band"],
        cnn_groups=dict(manifest.get("cnn_groups", {})),
        xgb_groups=dict(manifest.get("xgb_groups", {})),
    )
