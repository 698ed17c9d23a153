"""The gate's rules on constructed evaluations: fold pairing, undefined metrics, context, first champion.

Each case is built by hand so the expected decision follows from the numbers written here, not
from the code under test.
"""

from __future__ import annotations

import math
from typing import Any

from training.gate import GateConfig, decide

CONTEXT = {
    "horizon": 1,
    "window": 32,
    "label": "log(close[t+h] / close[t])",
    "spec_version": "1",
    "cost_bps": {"crypto": 10.0},
    "metric_rules": "2",
    "series": ["BTCUSDT:1h"],
}
WINDOWS = [("2023-01-01", "2023-02-01"), ("2023-02-01", "2023-03-01"), ("2023-03-01", "2023-04-01")]
ONLY_ACCURACY = GateConfig(margins={"directional_accuracy": 0.005})


def evaluation(accuracy: list[float | None], **context: Any) -> dict[str, Any]:
    folds = [{"fold": k + 1, "start": s, "end": e} for k, (s, e) in enumerate(WINDOWS)]
    model = [
        {"fold": k + 1, "directional_accuracy": a, "ic": 0.01, "sharpe": 0.1} for k, a in enumerate(accuracy)
    ]
    return {
        "context": CONTEXT | context,
        "folds": folds,
        "series": ["BTCUSDT:1h"],
        "predictors": {"model": model},
    }


def test_undefined_folds_are_dropped_from_both_sides_so_a_worse_challenger_is_kept() -> None:
    # The defect: champion mean over 3 folds (0.45 + 0.35 + 0.20) / 3 = 0.333, challenger mean over
    # its one defined fold 0.40 → "0.40 > 0.333" promoted a challenger that lost its only
    # comparable fold (0.40 < 0.45).
    champion = evaluation([0.45, 0.35, 0.20])
    challenger = evaluation([0.40, None, None])
    decision = decide(challenger, champion, ONLY_ACCURACY)
    assert not decision.promote
    assert decision.folds == [1, 2, 3]
    assert decision.challenger["directional_accuracy"] == 0.40
    assert decision.champion["directional_accuracy"] == 0.45  # the same single fold on both sides
    assert "2 fold(s) not comparable" in decision.checks[0]["detail"]


def test_a_nan_metric_is_never_a_win() -> None:
    champion = evaluation([0.50, 0.50, 0.50])
    for bad in (math.nan, None):
        decision = decide(evaluation([bad, bad, bad]), champion, ONLY_ACCURACY)
        assert not decision.promote
        assert "not comparable on any common fold" in decision.reason or "fails" in decision.reason
    # NaN on the champion's side makes the pair not comparable either: no free win.
    decision = decide(evaluation([0.60, 0.60, 0.60]), evaluation([math.nan] * 3), ONLY_ACCURACY)
    assert not decision.promote


def test_one_huge_fold_cannot_carry_a_challenger_that_loses_most_folds() -> None:
    # Paired differences +0.20, -0.01, -0.01: mean +0.06 clears the margin, but it wins 1 of 3.
    decision = decide(evaluation([0.70, 0.49, 0.49]), evaluation([0.50, 0.50, 0.50]), ONLY_ACCURACY)
    assert not decision.promote
    assert "won 1/3 folds" in decision.checks[0]["detail"]


def test_a_challenger_that_wins_fold_by_fold_by_the_margin_is_promoted() -> None:
    # Differences +0.010, +0.006, +0.002: mean +0.006 ≥ 0.005 and 2 of 3 folds clear the margin.
    decision = decide(evaluation([0.510, 0.506, 0.502]), evaluation([0.50, 0.50, 0.50]), ONLY_ACCURACY)
    assert decision.promote, decision.reason
    assert decision.challenger["directional_accuracy"] == (0.510 + 0.506 + 0.502) / 3


def test_stored_folds_made_under_another_context_are_not_compared() -> None:
    champion = evaluation([0.40, 0.40, 0.40])
    for key, value in (("horizon", 4), ("window", 64), ("cost_bps", {"crypto": 1.0}), ("spec_version", "2")):
        decision = decide(evaluation([0.60, 0.60, 0.60], **{key: value}), champion, ONLY_ACCURACY)
        assert not decision.promote
        assert decision.reason.startswith(f"not comparable: {key} differs")
        assert decision.folds == []  # so the caller re-scores the champion instead
    old = evaluation([0.40, 0.40, 0.40])
    del old["context"]
    assert "records no context" in decide(evaluation([0.6] * 3), old, ONLY_ACCURACY).reason


def criteria(
    *, acc: float = 0.54, baselines: tuple[float, float, float] = (0.50, 0.46, 0.49), ric_low: float = 0.02
) -> dict[str, Any]:
    names = ("always_long", "persistence", "shuffled_control")
    edges = {
        n: {"edge": acc - b, "low": acc - b - 0.02, "high": acc - b + 0.02}
        for n, b in zip(names, baselines, strict=True)
    }
    return {
        "rows": 9000,
        "start": "2023-01-01T00:00:00+00:00",
        "end": "2023-12-30T00:00:00+00:00",
        "accuracy": {"model": acc, **dict(zip(names, baselines, strict=True))},
        "accuracy_edge": edges,
        "rank_ic": {"value": ric_low + 0.03, "low": ric_low, "high": ric_low + 0.06},
        "rank_ic_edge": {},
        "sharpe": {"model": -0.2, "always_long": 2.5},
        "level": 0.95,
        "block": 21,
        "reps": 400,
    }


def first(crit: dict[str, Any], config: GateConfig | None = None):
    return decide(evaluation([0.5, 0.5, 0.5]) | {"criteria": crit}, None, config)


def test_a_first_champion_must_beat_every_baseline_and_have_rank_ic_above_zero() -> None:
    earned = first(criteria())
    assert earned.promote, earned.reason
    # Sharpe below always-long is reported, not gated, by default...
    sharpe = next(c for c in earned.checks if c["name"] == "sharpe_vs_always_long")
    assert sharpe["passed"]
    assert "reported only" in sharpe["detail"]
    # ...and gated when the setting asks for it.
    assert not first(criteria(), GateConfig(gate_on_sharpe=True)).promote
    # Losing to persistence (0.54 < 0.55) or a rank-IC interval touching 0 is not earned.
    lost = first(criteria(baselines=(0.50, 0.55, 0.49)))
    assert not lost.promote
    assert "accuracy_vs_persistence" in lost.reason
    weak = first(criteria(ric_low=-0.001))
    assert not weak.promote
    assert "rank_ic_interval" in weak.reason
    # An undefined number fails its check instead of passing it.
    undefined = criteria()
    undefined["rank_ic"] = {"value": None, "low": None, "high": None}
    assert not first(undefined).promote
    assert not first({}).promote
