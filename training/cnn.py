"""The window CNN: model, one training loop shared by Ray and plain runs, ONNX export with parity.

:func:`fit` is plain PyTorch: it trains on its shard of the samples, early-stops on the pooled
validation loss and hands every epoch's state to a ``report`` callable. :func:`train_per_worker`
is the thin Ray Train edge (DDP via ``prepare_model``, ``ray.train.report`` once per epoch with a
checkpoint, resume from ``ray.train.get_checkpoint()``), so the benchmark can run the very same
loop without Ray. Checkpoints and bundles hold arrays (``.npz``) and ONNX, never pickles.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tradeloop.errors import DataQualityError
from tradeloop.features import spec
from tradeloop.features.windows import gather_windows
from tradeloop.inference.model import onnx_scores

__all__ = [
    "ONNX_TOLERANCE",
    "WindowCNN",
    "export_onnx",
    "fit",
    "load_state",
    "onnx_scores",
    "train_per_worker",
    "verify_onnx",
]

ONNX_TOLERANCE = 1e-4
STATE_FILE = "state.npz"


class WindowCNN(nn.Module):
    """Conv1d over a (batch, W, C) window → one score (the predicted volatility-scaled return).

    The channel normaliser (mean/std fitted on training rows only) is a fixed buffer inside the
    model, so the exported ONNX takes raw feature-store windows.
    """

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.body = nn.Sequential(
            nn.Conv1d(channels, width, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, width, kernel_size=5, padding=4, dilation=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, 1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        x = ((window - self.mean) / self.std).transpose(1, 2)  # (B, C, W)
        h = self.body(x)
        pooled = torch.cat([h.mean(dim=2), h[:, :, -1]], dim=1)  # whole window + latest bar
        return self.head(pooled).squeeze(1)


@dataclass(frozen=True)
class CNNData:
    """What a worker needs: per-series channels and the samples it may fit and validate on."""

    channels: list[np.ndarray]
    fit_sid: np.ndarray
    fit_row: np.ndarray
    fit_z: np.ndarray
    val_sid: np.ndarray
    val_row: np.ndarray
    val_z: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    window: int

    def gather(self, sid: np.ndarray, row: np.ndarray) -> np.ndarray:
        return gather_windows(self.channels, sid, row, self.window)


def _state_arrays(model: nn.Module, opt: torch.optim.Optimizer, best: dict[str, np.ndarray]) -> dict:
    arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in _plain(model).state_dict().items()}
    arrays |= {f"best.{k}": v for k, v in best.items()}
    for i, state in opt.state_dict()["state"].items():
        arrays |= {f"opt.{i}.{k}": v.detach().cpu().numpy() for k, v in state.items()}
    return arrays


def _plain(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def load_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Best weights and the progress record from a checkpoint directory."""
    with np.load(path / STATE_FILE, allow_pickle=False) as z:
        best = {k[5:]: z[k] for k in z.files if k.startswith("best.")}
    return best, json.loads((path / "progress.json").read_text())


def fit(
    data: CNNData,
    config: dict[str, Any],
    *,
    rank: int = 0,
    world: int = 1,
    wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
    resume: Path | None = None,
    report: Callable[[dict[str, Any], Path | None], None] = lambda metrics, ckpt: None,
    device: torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Train on this rank's shard; every epoch ``report(metrics, checkpoint_dir or None)``.

    All ranks shuffle with the same seed and take equal-sized shards so DDP steps stay in lock
    step; the validation loss is summed over ranks so every rank takes the same stopping decision.
    Returns the best weights (lowest validation loss).
    """
    torch.manual_seed(config["seed"])
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    model = WindowCNN(len(spec.CHANNELS), config["width"])
    model.mean.copy_(torch.from_numpy(data.mean))
    model.std.copy_(torch.from_numpy(data.std))
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    progress: dict[str, Any] = {"epoch": 0, "best_val": float("inf"), "bad_epochs": 0, "history": []}
    best = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    if resume is not None:
        with np.load(resume / STATE_FILE, allow_pickle=False) as z:
            model.load_state_dict({k[6:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("model.")})
            best = {k[5:]: z[k] for k in z.files if k.startswith("best.")}
            opt_state = opt.state_dict()
            for i in opt_state["state"] or range(len(list(model.parameters()))):
                keys = [k for k in z.files if k.startswith(f"opt.{i}.")]
                opt_state["state"][i] = {k.split(".", 2)[2]: torch.from_numpy(z[k]) for k in keys}
            opt.load_state_dict(opt_state)
        progress = json.loads((resume / "progress.json").read_text())
        progress["resumed_at_epoch"] = progress["epoch"]
    device = device or torch.device("cpu")
    model = wrap(model.to(device))
    loss_fn = nn.HuberLoss(delta=1.0)
    batch = config["batch"]
    n_shard = len(data.fit_z) // world
    val_idx = np.arange(rank, len(data.val_z), world)
    val_x = torch.from_numpy(data.gather(data.val_sid[val_idx], data.val_row[val_idx])).to(device)
    val_z = torch.from_numpy(data.val_z[val_idx].astype(np.float32)).to(device)
    while progress["epoch"] < config["epochs"] and progress["bad_epochs"] < config["patience"]:
        epoch = progress["epoch"]
        perm = np.random.default_rng(config["seed"] + epoch).permutation(len(data.fit_z))
        mine = perm[rank * n_shard : (rank + 1) * n_shard]
        model.train()
        total = 0.0
        for start in range(0, n_shard, batch):
            idx = mine[start : start + batch]
            x = torch.from_numpy(data.gather(data.fit_sid[idx], data.fit_row[idx])).to(device)
            z = torch.from_numpy(data.fit_z[idx].astype(np.float32)).to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), z)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            sums = torch.tensor(
                [float(loss_fn(model(val_x), val_z)) * len(val_z), float(len(val_z)), total, float(n_shard)],
                dtype=torch.float64,
            )
        if world > 1:
            sums = sums.to(device)
            torch.distributed.all_reduce(sums)
            sums = sums.cpu()
        val_loss, train_loss = float(sums[0] / sums[1]), float(sums[2] / sums[3])
        progress["epoch"] = epoch + 1
        if val_loss < progress["best_val"]:
            progress["best_val"], progress["bad_epochs"] = val_loss, 0
            best = {k: v.detach().cpu().numpy().copy() for k, v in _plain(model).state_dict().items()}
        else:
            progress["bad_epochs"] += 1
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss}
        progress["history"].append(metrics)
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                np.savez(Path(tmp) / STATE_FILE, **_state_arrays(model, opt, best))
                (Path(tmp) / "progress.json").write_text(json.dumps(progress))
                report(metrics, Path(tmp))
        else:
            report(metrics, None)
    return best


def train_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop: DDP-wrap, resume from the latest checkpoint, report once per epoch."""
    import ray
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    data: CNNData = ray.get(config["data_ref"])

    def report(metrics: dict[str, Any], ckpt: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(ckpt)) if ckpt is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)

    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else nullcontext() as resume:
        fit(
            data,
            config,
            rank=ctx.get_world_rank(),
            world=ctx.get_world_size(),
            wrap=ray.train.torch.prepare_model,
            resume=Path(resume) if resume else None,
            report=report,
            device=ray.train.torch.get_device(),
        )


def model_from_state(state: dict[str, np.ndarray], width: int) -> WindowCNN:
    model = WindowCNN(len(spec.CHANNELS), width)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return model.eval()


def export_onnx(model: WindowCNN, path: Path, held_out: np.ndarray) -> float:
    """Write ONNX (dynamic batch) and return the max abs diff to PyTorch on ``held_out`` windows.

    Raises :class:`DataQualityError` above :data:`ONNX_TOLERANCE` (see :func:`verify_onnx`): a
    bundle whose exported model disagrees with the trained one must never be registered.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(held_out[:2])
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["window"],
        output_names=["cnn_score"],
        dynamic_axes={"window": {0: "batch"}, "cnn_score": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return verify_onnx(model, path, held_out)


def verify_onnx(model: WindowCNN, path: Path, windows: np.ndarray) -> float:
    """Max abs diff between ONNX Runtime on ``path`` and ``model`` over ``windows`` (B, W, C).

    Raises :class:`DataQualityError` when the file cannot be loaded or run, when its output is not
    one score per window, or when the diff is above :data:`ONNX_TOLERANCE` (or NaN).
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = onnx_scores(session, windows)
    except Exception as exc:  # onnxruntime raises its own pybind error types
        raise DataQualityError(f"ONNX file {path.name} cannot be loaded or run: {exc}") from exc
    with torch.no_grad():
        expected = model(torch.from_numpy(windows)).numpy()
    if got.shape != expected.shape:
        raise DataQualityError(
            f"ONNX file {path.name} outputs shape {got.shape}, expected {expected.shape} (one per window)"
        )
    diff = float(np.max(np.abs(expected - got))) if len(windows) else 0.0
    if not diff <= ONNX_TOLERANCE:
        raise DataQualityError(f"ONNX export of {path.name} differs from PyTorch by {diff:.3g}")
    return diff
