"""``tradeloop retrain`` end to end on the real crypto slice: promote a better model, keep otherwise.

The champion starts as the shuffled-label bundle (promoted by hand); a retrain on real labels must
beat it fold by fold and be promoted (exit 0). A second retrain on the same data and seeds gives
the same numbers, which cannot clear the margin: the champion is kept (exit 10) and untouched.
"""

from __future__ import annotations

from typer.testing import CliRunner

from tradeloop.cli.main import app
from tradeloop.cli.retrain import KEPT
from tradeloop.registry import CHAMPION, Registry
from training.gate import register_and_gate


def test_retrain_promotes_a_better_model_then_keeps_the_champion(crypto_home, shuffled, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = Registry(crypto_home, uri)
    fake, _ = register_and_gate(registry, shuffled.bundle_dir, None, promote=False)
    registry.promote(fake.version, reason="test: a weak champion", manual=True)
    summary = tmp_path / "summary.md"
    runner = CliRunner()
    args = ["--home", str(crypto_home.home), "retrain", "--reason", "drift-detected", "--mlflow-uri", uri]
    args += ["--gate-metrics", "directional_accuracy,rank_ic"]  # why: CLEAR_EDGE in test_gate.py
    first = runner.invoke(app, [*args, "--summary", str(summary)])
    assert first.exit_code == 0, first.output
    promoted = registry.alias(CHAMPION).version
    assert promoted != fake.version
    assert registry.get(promoted).tags["gate.decision"] == "promote"
    text = summary.read_text()
    assert "promoted to champion" in text
    assert "reason: `drift-detected`" in text
    assert f"champion before: v{fake.version}" in text
    assert "directional_accuracy: challenger 0." in text  # the gate's numbers, fold by fold
    assert "| model |" in text  # the metrics table beside the baselines

    second = runner.invoke(app, [*args, "--summary", str(summary)])
    assert second.exit_code == KEPT, second.output
    assert registry.alias(CHAMPION).version == promoted
    assert summary.read_text().count("## tradeloop retrain") == 2
    assert "kept the champion" in summary.read_text()
