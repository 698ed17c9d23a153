"""The training job: validate → CNN per market group → XGBoost per timeframe group → evaluate → bundle.

:func:`prepare` does every check that can fail on the caller's input (unknown series, too little
data, an empty split) before anything starts Ray, so bad input costs milliseconds and a clear
message. :func:`run` then trains with Ray Train (``TorchTrainer`` and ``XGBoostTrainer``), exports
and checks the ONNX CNNs, scores every predictor on the walk-forward windows and writes a bundle
and a report. Locally it starts a small Ray itself; on a cluster (KubeRay RayJob) it joins the
running one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradeloop.config import Settings
from tradeloop.errors import InvalidInput
from tradeloop.features import spec
from training import cnn, xgb
from training.datasets import Dataset, Plan, load_dataset, plan, resolve_series
from training.presets import Preset

__all__ = [
    "HEALTH_CHECK_ENV",
    "Prepared",
    "TrainRequest",
    "TrainResult",
    "prepare",
    "ray_session",
    "run",
    "shuffled_within",
]

HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_S = "0.05"  # Ray V2 paces each report by this poll interval (default 2 s)


@dataclass(frozen=True)
class TrainRequest:
    """What to train: a preset, the series filters, and how to run it."""

    preset: Preset
    symbols: list[str] | None = None
    timeframes: list[str] | None = None
    workers: int = 2
    gpu: bool = False
    shuffle_labels: bool = False  # the control run: fit on permuted labels, score on real ones
    max_failures: int = 1
    bars: dict[tuple[str, str], pd.DataFrame] | None = None  # in-memory bars (benchmark)


@dataclass(frozen=True)
class Prepared:
    """A validated request: the dataset, its time plan, and the training targets."""

    request: TrainRequest
    data: Dataset
    plan: Plan
    target: np.ndarray  # z-scored labels the models fit (permuted within training rows in a control run)


@dataclass
class TrainResult:
    """What a run produced (paths, numbers) plus the masks tests check for leakage."""

    run_dir: Path
    bundle_dir: Path
    report_dir: Path
    prepared: Prepared
    cnn_scores: np.ndarray  # NaN on every row the scores were not computed for
    cnn_rows: dict[str, np.ndarray]  # group → indices the CNN's weights were fitted on
    report: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    preds: dict[str, np.ndarray] = field(default_factory=dict)  # name → return prediction per sample


def prepare(settings: Settings, request: TrainRequest) -> Prepared:
    """Resolve, load and split the data; raises :class:`InvalidInput` before any Ray work."""
    preset = request.preset
    if request.workers < 1:
        raise InvalidInput("workers", f"need at least 1 worker, got {request.workers}")
    if request.bars is not None:
        pairs = sorted(request.bars)
    else:
        pairs = resolve_series(settings, request.symbols, request.timeframes)
    if preset.window > spec.WINDOW:
        raise InvalidInput(
            "window",
            f"preset {preset.name!r} uses W={preset.window} bars but the online store keeps {spec.WINDOW}; "
            f"a served model could never get a full window",
        )
    data = load_dataset(settings, pairs, window=preset.window, horizon=preset.horizon, bars=request.bars)
    layout = plan(
        data, cnn_fraction=preset.cnn_fraction, val_fraction=preset.cnn_val_fraction, folds=preset.folds
    )
    target = data.z.astype(np.float32)
    if request.shuffle_labels:
        target = shuffled_within(target, data, (layout.cnn_fit, layout.cnn_val, layout.xgb), preset.seed)
    return Prepared(request, data, layout, target)


def shuffled_within(
    target: np.ndarray, data: Dataset, masks: tuple[np.ndarray, ...], seed: int
) -> np.ndarray:
    """``target`` with values permuted only among the rows of each (mask, model group) cell.

    The control run must never move a test row's label onto a training row: each training stage's
    rows are permuted among themselves (per CNN and XGBoost group), everything else is untouched.
    XGBoost's walk-forward folds permute their own train rows again (:func:`xgb_data`).
    """
    rng = np.random.default_rng(seed)
    out = target.copy()
    groups = data.group_of("cnn").astype(str) + "|" + data.group_of("xgb").astype(str)
    for mask in masks:
        for group in np.unique(groups[mask]):
            idx = np.flatnonzero(mask & (groups == group))
            out[idx] = target[rng.permutation(idx)]
    return out


@contextmanager
def ray_session(workers: int, gpu: bool) -> Iterator[int]:
    """Join a running Ray or start a local one sized for ``workers``; yields CPUs per worker."""
    import ray

    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)
    if not ray.is_initialized() and os.environ.get("RAY_ADDRESS"):
        # a KubeRay RayJob driver: join the cluster as it is (Ray refuses num_cpus when joining)
        ray.init(runtime_env={"env_vars": {HEALTH_CHECK_ENV: os.environ[HEALTH_CHECK_ENV]}})
    if ray.is_initialized():
        total = int(ray.cluster_resources().get("CPU", workers))
        yield max(1, total // workers)
        return
    gpus = 0
    if gpu:
        import torch

        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise InvalidInput("gpu", "--gpu asked for GPU workers but this machine has no CUDA device")
    per_worker = max(1, (os.cpu_count() or 1) // workers)
    # A local Ray's start-up notices (auth token generated, "Started a local Ray instance") would
    # bury the command's own output: only Ray's errors reach the terminal.
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(
        num_cpus=workers * per_worker,
        num_gpus=gpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {HEALTH_CHECK_ENV: os.environ[HEALTH_CHECK_ENV]}},
    )
    try:
        yield per_worker
    finally:
        ray.shutdown()


def _run_config(name: str, storage: Path, max_failures: int) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig(
        name=name,
        storage_path=str(storage),
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
    )


def cnn_data(prep: Prepared, group: str) -> tuple[cnn.CNNData, np.ndarray]:
    """The CNN's fit/validation samples of ``group`` and the normaliser fitted on the fit rows.

    Returns the data and the sample indices the weights are fitted on. Only the most recent
    ``cnn_max_train_rows`` fit rows are kept, so the fit range still ends at the cutoff.
    """
    data, layout, preset = prep.data, prep.plan, prep.request.preset
    in_group = data.group_of("cnn") == group
    fit_idx = np.flatnonzero(layout.cnn_fit & in_group)
    if len(fit_idx) > preset.cnn_max_train_rows:
        fit_idx = fit_idx[np.argsort(data.ts[fit_idx], kind="stable")[-preset.cnn_max_train_rows :]]
        fit_idx.sort()
    val_idx = np.flatnonzero(layout.cnn_val & in_group)
    last_bars = np.concatenate(
        [
            data.series[s].channels[data.row[fit_idx][data.sid[fit_idx] == s]]
            for s in np.unique(data.sid[fit_idx])
        ]
    )
    std = last_bars.std(axis=0).astype(np.float32)
    payload = cnn.CNNData(
        channels=[s.channels for s in data.series],
        fit_sid=data.sid[fit_idx],
        fit_row=data.row[fit_idx],
        fit_z=prep.target[fit_idx],
        val_sid=data.sid[val_idx],
        val_row=data.row[val_idx],
        val_z=prep.target[val_idx],
        mean=last_bars.mean(axis=0).astype(np.float32),
        std=np.where(std > 1e-6, std, 1.0).astype(np.float32),
        window=data.window,
    )
    return payload, fit_idx


def _train_cnn(
    prep: Prepared, group: str, ray_dir: Path, name: str, per_worker: int
) -> tuple[Any, dict, np.ndarray]:
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    req, preset = prep.request, prep.request.preset
    payload, fit_idx = cnn_data(prep, group)
    trainer = TorchTrainer(
        cnn.train_per_worker,
        train_loop_config={
            "data_ref": ray.put(payload),
            "width": preset.cnn_width,
            "lr": preset.cnn_lr,
            "epochs": preset.cnn_epochs,
            "patience": preset.cnn_patience,
            "batch": preset.cnn_batch,
            "seed": preset.seed,
            "threads": per_worker,
        },
        scaling_config=ScalingConfig(
            num_workers=req.workers, use_gpu=req.gpu, resources_per_worker={"CPU": per_worker}
        ),
        run_config=_run_config(f"{name}-cnn-{group}", ray_dir, req.max_failures),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as ckpt:
        best, progress = cnn.load_state(Path(ckpt))
    return cnn.model_from_state(best, preset.cnn_width), progress, fit_idx


def _train_xgb(
    prep: Prepared, group: str, scores: np.ndarray, ray_dir: Path, name: str, per_worker: int
) -> tuple[Any, dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
    import ray
    from ray.train import ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    payload, idx = xgb_data(prep, group, scores)
    preset, req = prep.request.preset, prep.request
    trainer = XGBoostTrainer(
        xgb.train_per_worker,
        train_loop_config={
            "data_ref": ray.put(payload),
            "depth": preset.xgb_depth,
            "eta": preset.xgb_eta,
            "rounds": preset.xgb_rounds,
            "seed": preset.seed,
            "threads": per_worker,
            "report_every": preset.xgb_report_every,
        },
        scaling_config=ScalingConfig(num_workers=req.workers, resources_per_worker={"CPU": per_worker}),
        run_config=_run_config(f"{name}-xgb-{group}", ray_dir, req.max_failures),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as ckpt:
        booster, outputs = xgb.load_outputs(Path(ckpt))
    return booster, outputs, idx, payload.fold_test


def xgb_data(prep: Prepared, group: str, scores: np.ndarray) -> tuple[xgb.XGBData, np.ndarray]:
    """XGBoost rows of one timeframe group (global indices ``idx``) with fold index sets."""
    data, layout, preset = prep.data, prep.plan, prep.request.preset
    idx = np.flatnonzero(layout.xgb & (data.group_of("xgb") == group))
    if np.isnan(scores[idx]).any():
        raise AssertionError("an XGBoost row has no out-of-sample CNN score")
    rng = np.random.default_rng(preset.seed + 1)
    fold_train = [np.flatnonzero(f.train[idx]) for f in layout.folds]
    real = data.z[idx].astype(np.float32)
    fold_target = [rng.permutation(real[t]) if prep.request.shuffle_labels else real[t] for t in fold_train]
    payload = xgb.XGBData(
        X=data.xgb_matrix(idx, scores[idx]),
        target=real,
        final=np.arange(len(idx)),
        final_target=prep.target[idx],
        fold_train=fold_train,
        fold_target=fold_target,
        fold_test=[np.flatnonzero(f.test[idx]) for f in layout.folds],
        control_target=[rng.permutation(real[t]) for t in fold_train],
    )
    return payload, idx


def steps(prep: Prepared) -> list[str]:
    """The steps :func:`run` reports through its ``progress`` callback, in order."""
    data = prep.data
    return [
        *(f"CNN {g}" for g in sorted(set(data.group_of("cnn")))),
        *(f"XGBoost {g}" for g in sorted(set(data.group_of("xgb")))),
        "evaluation and bundle",
    ]


def run(
    settings: Settings,
    prep: Prepared,
    *,
    run_dir: Path | None = None,
    ray_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, export, evaluate and write the bundle and report of a prepared request.

    ``progress`` is called with each name of :func:`steps` as that step starts, so a caller can
    show how far a run of several minutes is.
    """
    tell = progress or (lambda step: None)
    import onnxruntime as ort

    from training import report as reporting

    req, data, layout = prep.request, prep.data, prep.plan
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{req.preset.name}{'-shuffled' if req.shuffle_labels else ''}"
    run_dir = run_dir or settings.runs_dir / name
    bundle_dir, report_dir = run_dir / "bundle", run_dir / "report"
    ray_dir = ray_dir or settings.ray_results_dir
    timings: dict[str, float] = {}
    scores = np.full(len(data), np.nan, dtype=np.float32)
    cnn_rows: dict[str, np.ndarray] = {}
    curves: dict[str, Any] = {"cnn": {}, "xgb": {}}
    parity: dict[str, float] = {}
    normalisers: dict[str, Any] = {}
    preds = {k: np.full(len(data), np.nan) for k in ("model", "cnn_only", "shuffled_control")}
    with ray_session(req.workers, req.gpu) as per_worker:
        t0 = time.perf_counter()
        for group in sorted(set(data.group_of("cnn"))):
            tell(f"CNN {group}")
            model, progress, fit_idx = _train_cnn(prep, group, ray_dir, name, per_worker)
            cnn_rows[group] = fit_idx
            curves["cnn"][group] = progress["history"]
            held_out = data.windows(np.flatnonzero(layout.cnn_val & (data.group_of("cnn") == group))[:2048])
            path = bundle_dir / "cnn" / f"{group}.onnx"
            parity[group] = cnn.export_onnx(model, path, held_out)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            todo = np.flatnonzero(layout.xgb & (data.group_of("cnn") == group))
            for start in range(0, len(todo), 16384):
                chunk = todo[start : start + 16384]
                scores[chunk] = cnn.onnx_scores(session, data.windows(chunk))
            normalisers[f"cnn/{group}"] = {
                "kind": "per-channel mean/std of the window's bars",
                "fit_rows": len(fit_idx),
                "fit_start": _iso(data.ts[fit_idx].min()),
                "fit_end": _iso(data.ts[fit_idx].max()),
                "fit_last_label_end": _iso(data.label_end[fit_idx].max()),
                "cutoff": layout.cnn_cutoffs[group].isoformat(),
            }
        timings["cnn_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for group in sorted(set(data.group_of("xgb"))):
            tell(f"XGBoost {group}")
            booster, outputs, idx, fold_test = _train_xgb(prep, group, scores, ray_dir, name, per_worker)
            (bundle_dir / "xgb").mkdir(parents=True, exist_ok=True)
            booster.save_model(str(bundle_dir / "xgb" / f"{group}.ubj"))
            curves["xgb"][group] = [outputs[f"curve_{k}"].tolist() for k in range(len(fold_test))]
            for k, test in enumerate(fold_test):
                rows = idx[test]
                preds["model"][rows] = outputs[f"pred_{k}"] * data.scale[rows]
                preds["shuffled_control"][rows] = outputs[f"control_{k}"] * data.scale[rows]
                preds["cnn_only"][rows] = scores[rows] * data.scale[rows]
        timings["xgb_s"] = time.perf_counter() - t0
    from training.evaluate import evaluate, walk_forward_baselines

    tell("evaluation and bundle")
    preds |= walk_forward_baselines(data, layout)
    costs = req.preset.costs_bps
    evaluation, equity = evaluate(data, layout, preds, costs=costs, seed=req.preset.seed)
    serving = serving_maps(data, layout, preds["model"], costs)
    serving["reference"] = drift_reference(data, layout, preds["model"], serving["calibration"])
    evaluation |= {"learning_curves": curves, "onnx_max_abs_diff": parity, "timings": timings}
    evaluation |= {"calibration": serving["report"]}
    manifest = reporting.write_bundle(bundle_dir, prep, evaluation, normalisers, parity, serving)
    reporting.write_report(report_dir, evaluation, equity)
    return TrainResult(
        run_dir, bundle_dir, report_dir, prep, scores, cnn_rows, evaluation, manifest, timings, preds
    )


def serving_maps(
    data: Dataset, layout: Plan, model_pred: np.ndarray, costs: dict[str, float]
) -> dict[str, Any]:
    """Calibration and no-trade band fitted on the walk-forward folds' out-of-sample scores.

    Returns ``calibration`` and ``band`` for the bundle and ``report`` (reliability, Brier score
    beside the base rate's, the rows each was fitted on) for the report.
    """
    from training.calibrate import brier, choose_band, cross_fitted, fit_calibration, reliability
    from training.evaluate import run_backtest

    idx = np.flatnonzero(layout.test)
    fold_of = np.zeros(len(data), dtype=np.int32)
    for fold in layout.folds:
        fold_of[fold.test] = fold.index
    score = model_pred[idx] / data.scale[idx]
    moved = data.y[idx] != 0
    up = (data.y[idx] > 0).astype(np.float64)
    rows = {
        "rows": int(moved.sum()),
        "start": _iso(data.ts[idx].min()),
        "end": _iso(data.ts[idx].max()),
        "folds": [f.index for f in layout.folds],
        "what": "walk-forward out-of-sample model scores (rows no fold model trained on)",
    }
    calibration = fit_calibration(score[moved], up[moved]) | {"fitted_on": rows}
    held = cross_fitted(score[moved], up[moved], fold_of[idx][moved])
    base = float(np.mean(up[moved]))
    ok = np.isfinite(held)
    band = choose_band(score, lambda gated: run_backtest(data, idx, gated * data.scale[idx], costs).sharpe)
    band |= {"fitted_on": rows | {"rows": len(idx)}, "score": "XGBoost z-score (predicted return / scale)"}
    report = {
        "reliability": reliability(held[ok], up[moved][ok]),
        "brier": brier(held[ok], up[moved][ok]),
        "brier_base_rate": brier(np.full(int(ok.sum()), base), up[moved][ok]),
        "base_rate": base,
        "rows": int(ok.sum()),
        "how": "cross-fitted: each fold's probabilities from a map fitted on the other folds",
        "knots": len(calibration["x"]),
        "band": {k: band[k] for k in ("threshold", "quantile", "sharpe_in_sample", "grid")},
    }
    return {"calibration": calibration, "band": band, "report": report}


def drift_reference(
    data: Dataset, layout: Plan, model_pred: np.ndarray, calibration: dict[str, Any]
) -> dict[str, Any]:
    """What the monitor compares live data with (``tradeloop.drift`` references, JSON).

    Features: every training sample's indicators, per series and pooled, in time order.
    Predictions: ``prob_up`` of the walk-forward out-of-sample scores, mapped by the bundle's own
    calibration (what the served model's outputs look like on data it did not train on).
    """
    from tradeloop.calibration import prob_up
    from tradeloop.drift import reference_by_series, reference_stats

    names = list(spec.FEATURE_NAMES)
    frame = pd.DataFrame(data.inputs(np.arange(len(data)))[:, : len(names)], columns=names)
    frame["series_id"] = [data.series[s].series_id for s in data.sid]
    frame["ts"] = data.ts
    frame = frame.sort_values(["series_id", "ts"], kind="stable")
    idx = np.flatnonzero(layout.test)
    probs = prob_up(calibration, model_pred[idx] / data.scale[idx])
    return {
        "features": reference_by_series(frame, names, "series_id"),
        "predictions": reference_stats(probs[np.argsort(data.ts[idx], kind="stable")][:, None], ["prob_up"]),
        "rows": {
            "features": len(frame),
            "predictions": len(idx),
            "start": _iso(data.ts.min()),
            "end": _iso(data.ts.max()),
        },
    }


def _iso(value: np.datetime64) -> str:
    return pd.Timestamp(value, tz="UTC").isoformat()
