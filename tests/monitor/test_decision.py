"""The monitor's decision rule on hand-written sequences: k breaches in a row, then a cooldown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scipy.stats import binomtest

from services.monitor.check import DRIFT, PERFORMANCE, MonitorConfig, decide, wilson_upper

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(sequence: list[tuple[bool, bool]], config: MonitorConfig, step: timedelta) -> list[str | None]:
    state: dict = {}
    fired = []
    for i, (drift, perf) in enumerate(sequence):
        reason, _, state = decide({DRIFT: drift, PERFORMANCE: perf}, state, T0 + i * step, config)
        fired.append(reason)
    return fired


def test_k_consecutive_breaches_fire_once_and_a_clean_check_resets_the_count() -> None:
    config = MonitorConfig(consecutive=3, cooldown_s=0)
    seq = [
        (True, False),
        (True, False),
        (False, False),
        (True, False),
        (True, False),
        (True, False),
        (True, False),
    ]
    # breaches 1, 2, reset, 1, 2, 3 → fire (counters reset), 1
    assert run(seq, config, timedelta(hours=1)) == [None, None, None, None, None, DRIFT, None]


def test_the_cooldown_suppresses_a_second_trigger_until_it_has_passed() -> None:
    config = MonitorConfig(consecutive=1, cooldown_s=3 * 3600)
    seq = [(True, False)] * 5  # one check an hour: fire at 0h, suppressed at 1h and 2h, fire at 3h
    assert run(seq, config, timedelta(hours=1)) == [DRIFT, None, None, DRIFT, None]
    _, why, _ = decide(
        {DRIFT: True, PERFORMANCE: False},
        {"last_trigger": {"at": T0.isoformat(), "reason": DRIFT}},
        T0 + timedelta(hours=1),
        config,
    )
    assert why.startswith("drift-detected: cooldown after the drift-detected trigger")


def test_degraded_performance_takes_precedence_over_drift() -> None:
    config = MonitorConfig(consecutive=1, cooldown_s=0)
    assert run([(True, True)], config, timedelta(hours=1)) == [PERFORMANCE]


def test_wilson_upper_bound_matches_a_hand_computed_value_and_scipy() -> None:
    # 40 right of 100, z = 1.6449: centre 0.4 + 1.6449²/200 = 0.413528; spread
    # 1.6449·sqrt(0.0024 + 1.6449²/40000) = 1.6449·0.049675 = 0.081711; /(1 + 1.6449²/100) → 0.482193
    assert abs(wilson_upper(40, 100) - 0.482193) < 1e-5
    # the one-sided 95% bound is the upper end of scipy's two-sided 90% Wilson interval
    for k, n in ((40, 100), (3, 10), (530, 1000)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.90, method="wilson")
        assert abs(wilson_upper(k, n) - ci.high) < 1e-4
    assert wilson_upper(0, 0) == 1.0
