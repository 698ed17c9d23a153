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


def _champion(registry: Registry, run):
    """Register ``run`` and make it champion (by the gate when it earns it, else by hand)."""
    version, decision = register_and_gate(registry, run.bundle_dir, None, promote=True)
    if not decision.promote:
        registry.promote(version.version, reason="test: older champion", manual=True)
    assert registry.alias(CHAMPION).version == version.version
    return version


def test_a_champion_trained_for_another_horizon_is_refused_with_the_reason(older, trained) -> None:
    import copy

    other = copy.deepcopy(older.manifest)
    other["horizon"] = 4
    other["evaluation"]["context"]["horizon"] = 4
    plain = decide(trained.manifest["evaluation"], other["evaluation"])
    assert not plain.promote
    assert plain.reason == "not comparable: horizon differs (4 vs 1)"
    from training.rescore import incompatibility

    assert incompatibility(other, trained) == "champion was built for another horizon (4 vs 1)"


def test_windows_of_a_retrain_do_not_match_the_champions(older, trained) -> None:
    plain = decide(trained.manifest["evaluation"], older.manifest["evaluation"])
    assert not plain.promote
    assert plain.reason.startswith("not comparable")


def test_champion_is_rescored_on_the_challenger_windows_after_its_data(older, trained, tmp_path) -> None:
    registry = _registry(tmp_path)
    champion = _champion(registry, older)
    version, decision = register_and_gate(registry, trained.bundle_dir, None, promote=True, result=trained)
    assert decision.basis == "champion re-scored on the challenger's windows"
    assert decision.folds, decision.reason
    for side in (decision.challenger, decision.champion):
        assert set(side) == {"directional_accuracy", "rank_ic", "sharpe"}  # the gated metrics
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
    champion = _champion(registry, older)
    _, decision = register_and_gate(registry, shuffled.bundle_dir, None, promote=True, result=shuffled)
    assert decision.basis == "champion re-scored on the challenger's windows"
    assert decision.folds
    assert not decision.promote, decision.reason
    assert registry.alias(CHAMPION).version == champion.version
