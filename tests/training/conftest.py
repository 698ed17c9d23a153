"""Shared, session-scoped training runs on a slice of the real crypto data (trained once).

One local Ray (2 CPUs, report pacing lowered as the job does) serves every test; the real and
the shuffled-label bundles are each trained once and reused by the end-to-end, leakage and gate
tests, so the folder stays within a few minutes on two cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import market_file
from tradeloop.bars.importer import import_file
from tradeloop.config import Settings

SLICE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
SLICE_BARS = 12_000  # the most recent 12K hourly bars of each symbol (~16 months)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    import ray

    from training.job import HEALTH_CHECK_ENV, HEALTH_CHECK_S

    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {HEALTH_CHECK_ENV: os.environ[HEALTH_CHECK_ENV]}},
        )
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def crypto_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home holding the last SLICE_BARS hourly bars of three real crypto series."""
    import pandas as pd

    root = tmp_path_factory.mktemp("crypto")
    settings = Settings.load(root / "home")
    for symbol in SLICE_SYMBOLS:
        source = market_file(f"{symbol}_1h.csv")
        sliced = root / f"{symbol}_1h.csv"
        pd.read_csv(source).iloc[-SLICE_BARS:].to_csv(sliced, index=False)
        import_file(sliced, settings)
    return settings


def _train(settings: Settings, root: Path, *, shuffle: bool):
    from training.job import TrainRequest, prepare, run
    from training.presets import get_preset

    prep = prepare(settings, TrainRequest(preset=get_preset("fast"), workers=2, shuffle_labels=shuffle))
    return run(settings, prep, run_dir=root / "run", ray_dir=root / "ray")


@pytest.fixture(scope="session")
def trained(crypto_home: Settings, ray_local: None, tmp_path_factory: pytest.TempPathFactory):
    """The fast preset trained end to end with 2 Ray workers on real labels."""
    return _train(crypto_home, tmp_path_factory.mktemp("real"), shuffle=False)


@pytest.fixture(scope="session")
def shuffled(crypto_home: Settings, ray_local: None, tmp_path_factory: pytest.TempPathFactory):
    """The same run with permuted training labels (scored on the real ones)."""
    return _train(crypto_home, tmp_path_factory.mktemp("shuffled"), shuffle=True)
