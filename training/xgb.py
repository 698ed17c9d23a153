"""XGBoost over indicators + out-of-sample CNN scores + metadata, one model per timeframe group.

:func:`fit` trains, on this worker's shard, one booster per walk-forward fold (and its shuffled-
label control) and then the bundle's final booster on every XGBoost row. It is plain xgboost;
:func:`train_per_worker` is the Ray Train V2 edge (``XGBoostTrainer`` sets up the collective so the
shards train one model). Ray V2 paces every ``ray.train.report`` by the controller's poll interval,
so :class:`PacedReportCallback` reports and checkpoints every N rounds instead of every round.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost
from ray.train.xgboost import RayTrainReportCallback

__all__ = ["MODEL_FILE", "PacedReportCallback", "XGBData", "fit", "params", "train_per_worker"]

MODEL_FILE = "model.ubj"
PREDS_FILE = "preds.npz"


@dataclass(frozen=True)
class XGBData:
    """One timeframe group's rows: inputs, targets, and index sets into them."""

    X: np.ndarray  # (n, k) float32 in datasets.xgb_feature_names() order
    target: np.ndarray  # (n,) float32 real target (scores the learning curves' test side)
    final: np.ndarray  # rows the bundle's booster trains on
    final_target: np.ndarray  # their targets (permuted within training rows in a control run)
    fold_train: list[np.ndarray]
    fold_target: list[np.ndarray]  # per fold: targets of fold_train (permuted there in a control run)
    fold_test: list[np.ndarray]
    control_target: list[np.ndarray]  # per fold: the fold's real train targets, permuted


def params(config: dict[str, Any]) -> dict[str, Any]:
    """Booster parameters; ``nthread`` is the worker's CPU count (more threads only contend)."""
    return {
        # Returns are heavy-tailed: squared error chases the tails and learns noise; the
        # pseudo-Huber loss with large leaves keeps the reversal/trend structure that is there.
        "objective": "reg:pseudohubererror",
        "huber_slope": 1.0,
        "eval_metric": "rmse",
        "tree_method": "hist",
        "max_depth": config["depth"],
        "eta": config["eta"],
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": config.get("min_child_weight", 200),
        "seed": config["seed"],
        "nthread": max(1, int(config.get("threads", 1))),
    }


class PacedReportCallback(RayTrainReportCallback):
    """``RayTrainReportCallback`` that reports (with a checkpoint) every ``every`` rounds only."""

    def __init__(self, every: int) -> None:
        super().__init__(metrics=None, frequency=every, checkpoint_at_end=False)
        self._every = every

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: dict) -> bool:
        self._evals_log = evals_log
        if (epoch + 1) % self._every == 0:
            super().after_iteration(model, epoch, evals_log)
        return False


def _shard(idx: np.ndarray, rank: int, world: int) -> np.ndarray:
    return idx[rank::world]


def fit(
    data: XGBData,
    config: dict[str, Any],
    *,
    rank: int = 0,
    world: int = 1,
    callbacks: Callable[[], list[xgboost.callback.TrainingCallback]] = list,
    resume: xgboost.Booster | None = None,
) -> tuple[xgboost.Booster, dict[str, np.ndarray]]:
    """Fold boosters (real and control) then the final booster; returns it and fold outputs.

    The outputs hold, per fold k, ``pred_k`` and ``control_k`` on the fold's test rows and the
    ``curve_k`` of train/test RMSE per round (learning curves for the report).
    """
    p = params(config)
    out: dict[str, np.ndarray] = {}
    for k, (train, test) in enumerate(zip(data.fold_train, data.fold_test, strict=True)):
        if len(test) == 0 or len(train) == 0:  # this group is not tested in fold k
            out[f"pred_{k}"] = out[f"control_{k}"] = np.empty(0, dtype=np.float32)
            out[f"curve_{k}"] = np.empty((2, 0))
            continue
        mine, mine_test = _shard(np.arange(len(train)), rank, world), _shard(test, rank, world)
        dtrain = xgboost.DMatrix(data.X[train[mine]], label=data.fold_target[k][mine])
        dtest = xgboost.DMatrix(data.X[mine_test], label=data.target[mine_test])
        log: dict = {}
        booster = xgboost.train(
            p,
            dtrain,
            config["rounds"],
            evals=[(dtrain, "train"), (dtest, "test")],
            evals_result=log,
            verbose_eval=False,
        )
        everything = xgboost.DMatrix(data.X[test])
        out[f"pred_{k}"] = booster.predict(everything)
        out[f"curve_{k}"] = np.stack([log["train"]["rmse"], log["test"]["rmse"]])
        control = xgboost.train(
            p, xgboost.DMatrix(data.X[train[mine]], label=data.control_target[k][mine]), config["rounds"]
        )
        out[f"control_{k}"] = control.predict(everything)
    mine = _shard(data.final, rank, world)
    dfinal = xgboost.DMatrix(data.X[mine], label=data.final_target[mine])
    done = resume.num_boosted_rounds() if resume is not None else 0
    final = xgboost.train(
        p,
        dfinal,
        config["rounds"] - done,
        evals=[(dfinal, "train")],
        verbose_eval=False,
        xgb_model=resume,
        callbacks=callbacks(),
    )
    return final, out


def train_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop: resume a half-boosted final model if a checkpoint holds one; report at end."""
    import ray
    import ray.train

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    data: XGBData = ray.get(config["data_ref"])
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        resume = RayTrainReportCallback.get_model(checkpoint, MODEL_FILE)
    final, outputs = fit(
        data,
        config,
        rank=rank,
        world=world,
        callbacks=lambda: [PacedReportCallback(config["report_every"])],
        resume=resume,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if rank == 0:
            final.save_model(str(Path(tmp) / MODEL_FILE))
            np.savez(Path(tmp) / PREDS_FILE, **outputs)
        ckpt = ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
        ray.train.report({"rounds": final.num_boosted_rounds(), "done": 1}, checkpoint=ckpt)


def load_outputs(path: Path) -> tuple[xgboost.Booster, dict[str, np.ndarray]]:
    """The final booster and fold outputs from a finished run's checkpoint directory."""
    booster = xgboost.Booster()
    booster.load_model(str(path / MODEL_FILE))
    with np.load(path / PREDS_FILE, allow_pickle=False) as z:
        return booster, {k: z[k] for k in z.files}
