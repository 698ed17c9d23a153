"""The promotion gate on MLflow (SQLite under a temporary home), with honestly trained bundles.

The real bundle has a genuine walk-forward edge on this data (short-term reversal in hourly
crypto); the shuffled one was fitted on permuted labels. Both were scored on identical windows.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tradeloop.cli.main import app
from tradeloop.config import Settings
from tradeloop.registry import CHAMPION, Registry
from training.gate import GateConfig, register_and_gate

# On this slice both bundles lose to crypto's 10 bps costs (Sharpe about -11 and -12 after costs),
# and which loses less is decided fold by fold by noise: here the real model wins 1 of 3 folds on
# Sharpe, while the same code and data passed a Sharpe-gated version of these tests on another
# machine (a different CPU's floating-point paths train slightly different models). Its edge is
# clear on the other two metrics (accuracy +0.048 and rank IC +0.087, 3 of 3 folds each), so the
# tests that need a promotion gate on those; the fold-by-fold rule, the same for every metric, is
# tested in test_gate_rules.py.
CLEAR_EDGE = GateConfig(margins={"directional_accuracy": 0.005, "rank_ic": 0.0})


def _registry(tmp_path) -> tuple[Settings, Registry]:
    settings = Settings.load(tmp_path / "home")
    return settings, Registry(settings, f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_shuffled_label_bundle_cannot_earn_first_champion(shuffled, tmp_path):
    _, registry = _registry(tmp_path)
    fake, decision = register_and_gate(registry, shuffled.bundle_dir, None, promote=True)
    assert not decision.promote
    assert decision.reason.startswith("first champion not earned")
    assert "rank_ic_interval" in decision.reason
    assert registry.alias(CHAMPION) is None  # it stays challenger
    tags = registry.get(fake.version).tags
    assert tags["gate.decision"] == "keep"
    assert tags["gate.check.rank_ic_interval"].startswith("fail")


def test_a_shuffled_label_bundle_does_not_replace_a_real_champion(trained, shuffled, tmp_path):
    _, registry = _registry(tmp_path)
    real, first = register_and_gate(registry, trained.bundle_dir, trained.report_dir, promote=True)
    assert first.promote, first.reason  # this real model beats every baseline out of sample
    assert first.basis == "first champion: out-of-sample criteria"
    fake, decision = register_and_gate(registry, shuffled.bundle_dir, None, promote=True)
    assert not decision.promote
    assert "directional_accuracy" in decision.reason
    assert registry.alias(CHAMPION).version == real.version
    tags = registry.get(fake.version).tags
    assert tags["gate.decision"] == "keep"
    assert float(tags["gate.champion.directional_accuracy"]) > float(
        tags["gate.challenger.directional_accuracy"]
    )
    assert tags["gate.applied"] == "false"


def test_a_real_bundle_replaces_a_shuffled_champion_and_rollback_restores_it(trained, shuffled, tmp_path):
    settings, registry = _registry(tmp_path)
    fake, first = register_and_gate(registry, shuffled.bundle_dir, None, promote=True)
    assert not first.promote
    registry.promote(fake.version, reason="test: serve the control by hand", manual=True)
    assert registry.alias(CHAMPION).version == fake.version
    assert registry.get(fake.version).tags["promoted.manual"] == "true"
    real, decision = register_and_gate(
        registry, trained.bundle_dir, trained.report_dir, promote=True, config=CLEAR_EDGE
    )
    assert decision.promote, decision.reason
    assert decision.challenger["directional_accuracy"] >= decision.champion["directional_accuracy"] + 0.005
    assert registry.alias(CHAMPION).version == real.version
    assert registry.get(real.version).tags["gate.decision"] == "promote"

    runner = CliRunner()
    uri = ["--mlflow-uri", registry.uri]
    home = ["--home", str(settings.home), "--json"]
    result = runner.invoke(app, [*home, "models", "rollback", *uri])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"from": real.version, "champion": fake.version}
    assert registry.alias(CHAMPION).version == fake.version
    listed = json.loads(runner.invoke(app, [*home, "models", "list", *uri]).stdout)
    assert [v["version"] for v in listed] == [real.version, fake.version]
    again = runner.invoke(app, [*home, "models", "rollback", *uri])
    assert again.exit_code == 3
    assert "no previous champion" in again.output


def test_a_registered_bundle_downloads_intact(trained, tmp_path):
    _, registry = _registry(tmp_path)
    version, _ = register_and_gate(registry, trained.bundle_dir, None, promote=False)
    assert registry.alias(CHAMPION) is None  # without --promote the decision is only recorded
    path = registry.download(version.version, tmp_path / "dl")
    assert (path / "bundle.json").is_file()
    assert (path / "cnn" / "crypto.onnx").is_file()
