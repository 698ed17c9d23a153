"""Fault tolerance: a Ray Train worker killed mid-training, and the run finishes from its checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import ray

from training import cnn
from training.job import _run_config, cnn_data


def _kill_a_worker_after_first_checkpoint(run_dir: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the newest of *this* session's Ray Train worker processes once checkpoints exist.

    Only descendants of this test process are candidates (other sessions may run Ray too), and the
    newest one belongs to the run under test, not to a finished earlier run.
    """
    while not stop.is_set():
        # the second checkpoint on disk means the first one has been registered with the controller
        if len(list(run_dir.glob("checkpoint_*"))) >= 2:
            workers = []
            for proc in psutil.Process(os.getpid()).children(recursive=True):
                try:
                    if proc.cmdline() and proc.cmdline()[0].startswith("ray::RayTrainWorker"):
                        workers.append((proc.create_time(), proc.pid))
                except psutil.Error:
                    continue
            if workers:
                pid = max(workers)[1]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def test_a_killed_worker_is_replaced_and_training_resumes_from_its_checkpoint(trained, tmp_path):
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    payload, _ = cnn_data(trained.prepared, "crypto")
    epochs = 6
    config = {"data_ref": ray.put(payload), "width": 8, "lr": 2e-3, "epochs": epochs, "patience": epochs}
    config |= {"batch": 512, "seed": 3, "threads": 1}
    run_config = _run_config("fault", tmp_path, max_failures=1)
    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(
        target=_kill_a_worker_after_first_checkpoint, args=(tmp_path / "fault", killed, stop), daemon=True
    )
    watcher.start()
    try:
        result = TorchTrainer(
            cnn.train_per_worker,
            train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=run_config,
        ).fit()
    finally:
        stop.set()
        watcher.join(5)
    assert killed, "no training worker was killed"
    assert result.error is None
    with result.checkpoint.as_directory() as ckpt:
        _, progress = cnn.load_state(Path(ckpt))
    assert progress["epoch"] == epochs
    assert progress.get("resumed_at_epoch", 0) >= 1  # restarted from a checkpoint, not from scratch
    assert len(progress["history"]) == epochs
