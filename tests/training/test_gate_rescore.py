"""A retrain on newer data is judged by re-scoring the champion on the challenger's windows.

The champion here is a real bundle trained on the same three crypto series but ending 4,000 bars
earlier, so none of its walk-forward windows match the challengers'. The gate must run the
champion's own ONNX and XGBoost artifacts over the challenger's test rows after the champion's
data, and decide on those numbers.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import market_file
from tests.training.conftest import SLICE_BARS, SLICE_SYMBOLS, _train
from tradeloop.bars.importer import import_file
from tradeloop.config import Settings
from tradeloop.registry import CHAMPION, Registry
from training.gate import decide, register_and_gate

HELD_BACK = 4000


@pytest.fixture(scope="module")
def older(ray_local, tmp_path_factory):
    """The fast preset on the same series, ending HELD_BACK bars before the challengers' data."""
    root = tmp_path_factory.mktemp("older")
    settings = Settings.load(root / "home")
    for symbol in SLICE_SYMBOLS:
        frame = pd.read_csv(market_file(f"{symbol}_1h.csv")).iloc[-SLICE_BARS - HELD_BACK : -HELD_BACK]
        path = root / f"{symbol}_1h.csv"
        frame.to_csv(path, index=False)
        import_file(path, settings)
    return _train(settings, root, shuffle=False)


def _registry(tmp_path) -> Registry:
    return Registry(Settings.load(tmp_path / "home"), f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_windows_of_a_retrain_do_not_match_the_champions(older, trained) -> None:
    plain = decide(trained.manifest["evaluation"], older.manifest["evaluation"])
    assert not plain.promote
    assert plain.reason.startswith("not comparable")


def test_champion_is_rescored_on_the_challenger_windows_after_its_data(older, trained, tmp_path) -> None:
    registry = _registry(tmp_path)
    champion, _ = register_and_gate(registry, older.bundle_dir, None, promote=True)
    version, decision = register_and_gate(registry, trained.bundle_dir, None, promote=True, result=trained)
    assert decision.basis == "champion re-scored on the challenger's windows"
    assert decision.folds, decision.reason
    for side in (decision.challenger, decision.champion):
        assert set(side) == {"directional_accuracy", "ic", "sharpe"}
        assert all(value is not None for value in side.values())
    assert decision.challenger != decision.champion, "two different models on the same rows"
    champion_end = pd.Timestamp(older.manifest["data"]["end"])
    tags = registry.get(version.version).tags
    assert tags["gate.basis"] == decision.basis
    assert tags["gate.champion_version"] == str(champion.version)
    # The rows compared all lie after the champion's data (plus its label horizon).
    folds = {f["fold"]: f for f in trained.report["folds"]}
    assert all(pd.Timestamp(folds[k]["end"]) > champion_end for k in decision.folds)
    expected = champion.version if not decision.promote else version.version
    assert registry.alias(CHAMPION).version == expected


def test_a_shuffled_retrain_does_not_replace_a_real_champion_on_rescored_windows(older, shuffled, tmp_path):
    registry = _registry(tmp_path)
    champion, _ = register_and_gate(registry, older.bundle_dir, None, promote=True)
    _, decision = register_and_gate(registry, shuffled.bundle_dir, None, promote=True, result=shuffled)
    assert decision.basis == "champion re-scored on the challenger's windows"
    assert decision.folds
    assert not decision.promote, decision.reason
    assert registry.alias(CHAMPION).version == champion.version
