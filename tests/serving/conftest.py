"""Serving fixtures: one real trained, registered champion over a materialized online store.

Two real crypto series (the last SERVE_BARS hourly bars of BTC and ETH) are imported, featurised,
applied to Feast (file registry + SQLite online store) and materialized; the fast preset is
trained once with Ray and registered in MLflow (SQLite) as champion, by the gate when the model
earns it, else by a recorded manual promotion. The bars are from 2023, so servers here run with
the feature-age check off (``max_feature_age=0``) except where a test is about staleness.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import market_file
from tradeloop.config import Settings

SERVE_SYMBOLS = ("BTCUSDT", "ETHUSDT")
SERVE_BARS = 4000


@dataclass(frozen=True)
class ServingHome:
    """A home with online features, a registry and its champion."""

    settings: Settings
    mlflow_uri: str
    version: str
    bundle_dir: Path
    result: object  # training.job.TrainResult of the champion


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory: pytest.TempPathFactory) -> ServingHome:
    from tradeloop import feature_store as fs
    from tradeloop.bars.importer import import_file
    from tradeloop.features.offline import build_series
    from tradeloop.features.recent import sync_windows
    from tradeloop.registry import CHAMPION, Registry
    from training.gate import register_and_gate
    from training.job import HEALTH_CHECK_ENV, HEALTH_CHECK_S, TrainRequest, prepare, run
    from training.presets import get_preset

    root = tmp_path_factory.mktemp("serving")
    settings = Settings.load(root / "home")
    for symbol in SERVE_SYMBOLS:
        frame = pd.read_csv(market_file(f"{symbol}_1h.csv")).iloc[-SERVE_BARS:]
        path = root / f"{symbol}_1h.csv"
        frame.to_csv(path, index=False)
        import_file(path, settings)
        build_series(settings, symbol, "1h")
    sync_windows(settings)
    fs.apply(settings)
    fs.materialize(fs.open_store(settings), start=datetime(2000, 1, 1, tzinfo=UTC))

    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)
    prep = prepare(settings, TrainRequest(preset=get_preset("fast"), workers=2))
    result = run(settings, prep, run_dir=root / "run", ray_dir=root / "ray")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry = Registry(settings, uri)
    version, decision = register_and_gate(registry, result.bundle_dir, result.report_dir, promote=True)
    if not decision.promote:
        registry.promote(version.version, reason="serving tests: champion by hand", manual=True)
    assert registry.alias(CHAMPION).version == version.version
    return ServingHome(settings, uri, version.version, result.bundle_dir, result)
