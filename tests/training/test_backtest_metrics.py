"""Backtest accounting and point metrics against numbers worked out by hand (no Ray, no data files).

Every expected value is either spelled out in a comment from the inputs or comes from an
independent reference (scipy.stats for correlations, plain numpy on the hand-built P&L vector).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tradeloop.errors import InvalidInput
from tradeloop.metrics import (
    block_bootstrap,
    directional_accuracy,
    ic,
    point_metrics,
    rank_ic,
    rmse,
)
from training.backtest import DEFAULT_COSTS_BPS, SeriesReturns, backtest, periods_per_year

NAN = float("nan")
ZERO_COSTS = {"crypto": 0.0, "equity": 0.0, "fx": 0.0, "commodity": 0.0}


def _series(ret1: list[float], timeframe: str = "1d", asset_class: str = "crypto", start: str = "2024-01-01",
            name: str = "") -> SeriesReturns:  # fmt: skip
    """A series whose feature rows are consecutive bars of ``timeframe`` from ``start``."""
    ts = pd.date_range(start, periods=len(ret1), freq=pd.Timedelta(timeframe)).to_numpy()
    return SeriesReturns(timeframe, asset_class, ts, np.asarray(ret1, dtype=np.float64), name)


def _run(pred: list[float], ret1: list[float], *, horizon: int = 1, costs=ZERO_COSTS, **kw):
    """Backtest one series scored on rows 0..len(pred)-1."""
    n = len(pred)
    return backtest(
        np.asarray(pred, dtype=np.float64),
        np.zeros(n, dtype=np.int64),
        np.arange(n),
        [_series(ret1, **kw)],
        horizon=horizon,
        cost_bps=costs,
    )


# --------------------------------------------------------------------------------------------- Sharpe


@pytest.mark.parametrize(
    ("timeframe", "asset_class", "ppy"),
    [("1d", "crypto", 365.0), ("1h", "fx", 260.0 * 24.0), ("1d", "equity", 252.0)],
)
def test_sharpe_is_annualised_per_market(timeframe: str, asset_class: str, ppy: float) -> None:
    ret1 = [0.01, -0.005, 0.02, 0.0, NAN]
    res = _run([1.0, 1.0, 1.0, 1.0], ret1, timeframe=timeframe, asset_class=asset_class)
    # always long, h=1, no cost: P&L = ret1[0:4] = 0.01, -0.005, 0.02, 0.0
    # mean = 0.025 / 4 = 0.00625; deviations 0.00375, -0.01125, 0.01375, -0.00625
    # squares 1.40625e-5 + 1.265625e-4 + 1.890625e-4 + 3.90625e-5 = 3.6875e-4; var (ddof 1) = /3
    sharpe = 0.00625 / math.sqrt(3.6875e-4 / 3) * math.sqrt(ppy)
    key = f"{timeframe}/{asset_class}"
    assert set(res.per_market) == {key}
    market = res.per_market[key]
    assert market["periods_per_year"] == ppy
    assert market["sharpe"] == pytest.approx(sharpe, rel=1e-12)
    assert res.sharpe == pytest.approx(sharpe, rel=1e-12)
    assert market["bars"] == 4
    assert market["positions"] == 4
    assert market["total_return"] == pytest.approx(math.expm1(0.025), rel=1e-12)
    # cum 0.01, 0.005, 0.025, 0.025; worst fall 0.01 -> 0.005
    assert res.max_drawdown == pytest.approx(1 - math.exp(-0.005), rel=1e-9)
    # sign*ret: 0.01 > 0, -0.005, 0.02 > 0, 0.0 (not > 0) -> 2 of 4
    assert res.hit_rate == 0.5
    # P = 1,1,1,1: |dP| = 1,0,0,0 plus the final unwind 1 -> 2 over 4 bars
    assert res.turnover == 0.5
    assert res.to_dict()["per_market"][key]["sharpe"] == market["sharpe"]


def test_periods_per_year_table() -> None:
    # crypto 365 days x 24 h; equity 252 sessions x 6.5 h; fx 260 days x 24; weekly bars
    assert periods_per_year("1h", "crypto") == 365 * 24
    assert periods_per_year("1h", "equity") == 252 * 6.5
    assert periods_per_year("15m", "fx") == 260 * 96
    assert periods_per_year("1w", "equity") == 252 / 5
    assert periods_per_year("1w", "crypto") == 365 / 7
    with pytest.raises(InvalidInput):
        periods_per_year("7m", "crypto")


def test_max_drawdown_hand_sequences() -> None:
    res = _run([1.0] * 5, [0.1, -0.2, 0.05, -0.1, 0.3, NAN])
    # cum 0.1, -0.1, -0.05, -0.15, 0.15; peak 0.1 until the last bar; deepest 0.1 - (-0.15) = 0.25
    assert res.max_drawdown == pytest.approx(1 - math.exp(-0.25), rel=1e-12)
    np.testing.assert_allclose(
        res.equity["1d/crypto"].to_numpy(), [0.1, -0.1, -0.05, -0.15, 0.15], atol=1e-15
    )
    # a loss on the first bar counts from the starting capital (curve starts at 0): dd = 0.1
    res = _run([1.0, 1.0], [-0.1, 0.05, NAN])
    assert res.max_drawdown == pytest.approx(1 - math.exp(-0.1), rel=1e-12)


# ---------------------------------------------------------------------------------- turnover and costs


def test_turnover_and_costs_follow_the_held_position() -> None:
    # signals +,+,-,0 with h=1 -> P = 1, 1, -1, 0; |dP| = 1, 0, 2, 1; final unwind |P[3]| = 0
    res = _run([0.3, 0.1, -0.2, 0.0], [0.01, 0.02, -0.03, 0.04, NAN], costs=DEFAULT_COSTS_BPS)
    assert res.turnover == pytest.approx(4 / 4)
    # c = 10 bps = 0.001: pnl = 0.01-0.001, 0.02, 0.03-0.002, 0-0.001 = 0.009, 0.02, 0.028, -0.001
    np.testing.assert_allclose(res.equity["1d/crypto"].to_numpy(), [0.009, 0.029, 0.057, 0.056], atol=1e-15)
    assert res.total_return == pytest.approx(math.expm1(0.056), rel=1e-12)
    # bars with a position: 0.01 > 0, 0.02 > 0, (-1)(-0.03) > 0 -> 3 of 3; the 0 signal is not a bet
    assert res.hit_rate == 1.0
    assert res.per_market["1d/crypto"]["positions"] == 3


def test_final_unwind_is_charged_with_overlapping_positions() -> None:
    # + at rows 0 and 1, h=2: P = 0.5, 1, 0.5 over rows 0..2; |dP| = 0.5, 0.5, 0.5, unwind 0.5
    res = _run([1.0, 1.0], [0.01, 0.02, 0.03, NAN], horizon=2, costs={"crypto": 10.0})
    assert res.turnover == pytest.approx(2.0 / 3)
    # pnl = 0.5*0.01 - 0.0005, 1*0.02 - 0.0005, 0.5*0.03 - 0.001 (0.5 change + 0.5 unwind)
    #     = 0.0045, 0.0195, 0.014 -> cum 0.0045, 0.024, 0.038
    np.testing.assert_allclose(res.equity["1d/crypto"].to_numpy(), [0.0045, 0.024, 0.038], atol=1e-15)


def test_costs_are_per_asset_class() -> None:
    series = [_series([0.01, NAN], asset_class="crypto"), _series([0.01, NAN], asset_class="fx")]
    res = backtest(np.array([1.0, 1.0]), np.array([0, 1]), np.array([0, 0]), series, horizon=1,
                   cost_bps={"crypto": 10.0, "fx": 1.0})  # fmt: skip
    # one bar long: in 1 + unwind 1 = 2 units traded; crypto 0.01 - 2*0.001, fx 0.01 - 2*0.0001
    assert res.per_market["1d/crypto"]["total_return"] == pytest.approx(math.expm1(0.008), rel=1e-12)
    assert res.per_market["1d/fx"]["total_return"] == pytest.approx(math.expm1(0.0098), rel=1e-12)


# --------------------------------------------------------------------------------------- horizon h > 1


def test_alternating_signal_with_h2_gives_the_hand_position_vector() -> None:
    # s = +1, -1, +1, -1 on rows 0..3, h=2: P[r] = (s[r] + s[r-1]) / 2 over rows 0..4
    #   = (1+0)/2, (-1+1)/2, (1-1)/2, (-1+1)/2, (0-1)/2 = 0.5, 0, 0, 0, -0.5
    ret1 = [0.01, 0.02, 0.03, 0.04, 0.05, NAN]
    res = _run([1.0, -1.0, 1.0, -1.0], ret1, horizon=2)
    # pnl = 0.5*0.01, 0, 0, 0, -0.5*0.05 = 0.005, 0, 0, 0, -0.025
    np.testing.assert_allclose(
        res.equity["1d/crypto"].to_numpy(), [0.005, 0.005, 0.005, 0.005, -0.02], atol=1e-15
    )
    # |dP| = 0.5, 0.5, 0, 0, 0.5 plus unwind 0.5 = 2.0 over 5 bars
    assert res.turnover == pytest.approx(0.4)
    assert res.per_market["1d/crypto"]["bars"] == 5


def test_buy_and_hold_sharpe_does_not_depend_on_the_horizon() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    r = rng.normal(0.002, 0.01, n)  # daily Sharpe ~0.2, so six edge bars barely move it
    ret1 = [*r, NAN]  # n + 1 rows; a row has an h-bar label when r + h <= n
    true = r.mean() / r.std(ddof=1) * math.sqrt(365)  # Sharpe of the 1-bar returns themselves
    h1 = _run([1.0] * n, ret1, horizon=1)
    assert h1.sharpe == pytest.approx(true, rel=1e-9)
    h4 = _run([1.0] * (n - 3), ret1, horizon=4)
    # rows 0..n-4 scored, grid rows 0..n-1. P[r] = (1/4)·Σ_{j<4} s[r-j]: no position exists before
    # row 0, so P ramps up 0.25, 0.5, 0.75; it is 1 while four signals are open; after the last
    # scored row n-4 the older signals expire one by one: 0.75, 0.5, 0.25 on rows n-3..n-1
    weights = np.concatenate([[0.25, 0.5, 0.75], np.ones(n - 6), [0.75, 0.5, 0.25]])
    held = r * weights
    expected = held.mean() / held.std(ddof=1) * math.sqrt(365)
    assert h4.sharpe == pytest.approx(expected, rel=1e-9)
    assert h4.sharpe == pytest.approx(true, rel=0.01)  # equal up to the six ramp bars
    assert h4.per_market["1d/crypto"]["bars"] == n


def test_hit_rate_uses_the_h_bar_label_and_skips_zero_signals() -> None:
    ret1 = [0.01, -0.03, 0.02, 0.01, -0.04, NAN]
    res = _run([-0.5, 0.0, 0.2, 0.7], ret1, horizon=2)
    # ret_2: row0 0.01-0.03 = -0.02, row2 0.02+0.01 = 0.03, row3 0.01-0.04 = -0.03
    # row0 (-1)(-0.02) > 0 hit; row1 no call; row2 (+1)(0.03) hit; row3 (+1)(-0.03) miss -> 2/3
    assert res.hit_rate == pytest.approx(2 / 3)
    assert res.per_market["1d/crypto"]["positions"] == 3


# --------------------------------------------------------------------------------------------- markets


def test_series_are_equal_weighted_per_timestamp_within_a_market() -> None:
    a = _series([0.01, 0.02, -0.01, NAN], timeframe="1h", start="2024-01-01 00:00")
    b = _series([0.03, -0.02, 0.04, NAN], timeframe="1h", start="2024-01-01 01:00")  # one bar later
    eq = _series([0.005, -0.002, 0.001, 0.003, NAN], timeframe="1h", asset_class="equity")
    pred = np.array([1, 1, 1, 1, 1, 1, -1, -1, -1, -1], dtype=np.float64)
    sid = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    row = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 3])
    res = backtest(pred, sid, row, [a, b, eq], horizon=1, cost_bps=ZERO_COSTS)
    assert set(res.per_market) == {"1h/crypto", "1h/equity"}
    # crypto by ts 00:00..03:00: a alone 0.01; (0.02+0.03)/2; (-0.01-0.02)/2; b alone 0.04
    crypto = np.array([0.01, 0.025, -0.015, 0.04])
    curve = res.equity["1h/crypto"]
    np.testing.assert_allclose(curve.to_numpy(), np.cumsum(crypto), atol=1e-15)
    assert list(curve.index) == list(pd.date_range("2024-01-01", periods=4, freq="1h"))
    short = -np.array([0.005, -0.002, 0.001, 0.003])  # equity always short
    s_crypto = crypto.mean() / crypto.std(ddof=1) * math.sqrt(365 * 24)
    s_equity = short.mean() / short.std(ddof=1) * math.sqrt(252 * 6.5)
    assert res.per_market["1h/crypto"]["sharpe"] == pytest.approx(s_crypto, rel=1e-12)
    assert res.per_market["1h/equity"]["sharpe"] == pytest.approx(s_equity, rel=1e-12)
    assert res.sharpe == pytest.approx((s_crypto + s_equity) / 2, rel=1e-12)
    assert res.per_market["1h/crypto"]["bars"] == 4
    # a: +1 0.01, +1 0.02, -0.01 miss; b: 0.03, -0.02 miss, 0.04; eq short: miss, hit, miss, miss
    assert res.hit_rate == pytest.approx(5 / 10)


def test_no_positions_is_flat_sharpe_zero_and_no_hit_rate() -> None:
    res = _run([0.0, 0.0, 0.0], [0.01, -0.02, 0.03, NAN], costs=DEFAULT_COSTS_BPS)
    assert res.sharpe == 0.0
    assert res.per_market["1d/crypto"]["sharpe"] == 0.0
    assert res.hit_rate is None
    assert res.turnover == 0.0
    assert res.total_return == 0.0
    assert res.max_drawdown == 0.0
    empty = backtest(
        np.array([]), np.array([], dtype=int), np.array([], dtype=int), [], horizon=1, cost_bps={}
    )
    assert empty.sharpe == 0.0
    assert empty.hit_rate is None
    assert empty.per_market == {}


def test_positions_on_a_single_bar_leave_sharpe_undefined() -> None:
    res = _run([1.0], [0.01, NAN])
    assert res.per_market["1d/crypto"]["sharpe"] is None
    assert res.sharpe is None
    assert res.hit_rate == 1.0


def test_bad_inputs_are_invalid_input() -> None:
    with pytest.raises(InvalidInput) as err:
        _run([1.0], [0.01, NAN], costs={"equity": 5.0})
    assert err.value.field == "cost_bps"
    with pytest.raises(InvalidInput, match="BTCUSDT:1d"):  # a held bar without a 1-bar return
        _run([1.0, 1.0], [0.01, NAN, 0.02, NAN], horizon=2, name="BTCUSDT:1d")
    with pytest.raises(InvalidInput) as err:  # held past the end of the series
        _run([1.0, 1.0], [0.01, 0.02], horizon=2)
    assert err.value.field == "ret1"
    with pytest.raises(InvalidInput) as err:
        backtest(np.ones(2), np.zeros(2, dtype=int), np.zeros(2, dtype=int), [_series([0.01, NAN])],
                 horizon=1, cost_bps=ZERO_COSTS)  # fmt: skip
    assert err.value.field == "row"
    with pytest.raises(InvalidInput) as err:
        _run([NAN], [0.01, NAN])
    assert err.value.field == "pred"
    with pytest.raises(InvalidInput) as err:
        _run([1.0], [0.01, NAN], horizon=0)
    assert err.value.field == "horizon"
    # a NaN 1-bar return where nothing is held is harmless: row 1 is not scored, nothing is open
    res = _run([1.0, 0.0, 0.0], [0.01, NAN, 0.02, NAN])
    np.testing.assert_allclose(res.equity["1d/crypto"].to_numpy(), [0.01, 0.01, 0.01], atol=1e-15)


# --------------------------------------------------------------------------------------- point metrics


def test_directional_accuracy_scores_no_call_as_half_and_skips_flat_bars() -> None:
    pred = [0.5, -0.2, 0.0, 0.3, 0.1]
    y = [0.1, 0.2, -0.3, 0.0, 0.05]
    # y == 0 drops row 3; row0 right 1, row1 wrong 0, row2 no call 0.5, row4 right 1 -> 2.5 / 4
    assert directional_accuracy(np.array(pred), np.array(y)) == pytest.approx(0.625)
    assert directional_accuracy(np.zeros(3), np.zeros(3)) is None
    assert directional_accuracy(np.zeros(4), np.array([0.1, -0.1, 0.2, 0.3])) == 0.5  # abstaining = chance
    with pytest.raises(InvalidInput) as err:
        directional_accuracy(np.array([NAN]), np.array([0.1]))
    assert err.value.field == "pred"
    with pytest.raises(InvalidInput) as err:
        directional_accuracy(np.array([0.1]), np.array([NAN]))
    assert err.value.field == "y"


def test_ic_and_rank_ic_match_scipy() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=300)
    pred = 0.3 * y + rng.normal(size=300)
    pred[:5] = pred[5]  # ties, so the ranking has to average them
    assert ic(pred, y) == pytest.approx(stats.pearsonr(pred, y).statistic, rel=1e-12)
    assert rank_ic(pred, y) == pytest.approx(stats.spearmanr(pred, y).statistic, rel=1e-12)
    assert ic(np.ones(10), y[:10]) is None
    assert rank_ic(pred[:10], np.full(10, 0.2)) is None
    assert ic(pred[:2], y[:2]) is None
    # pred 1, 2 vs y 0, 0: squared errors 1 and 4 -> sqrt(5 / 2)
    assert rmse(np.array([1.0, 2.0]), np.zeros(2)) == pytest.approx(math.sqrt(2.5))
    pm = point_metrics(pred, y)
    assert set(pm) == {"n", "directional_accuracy", "ic", "rank_ic", "rmse"}
    assert pm["n"] == 300


# ------------------------------------------------------------------------------------------- bootstrap


def test_iid_block1_bootstrap_matches_the_normal_interval() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(0.1, 1.0, 2000)
    est, lo, hi = block_bootstrap(lambda i: np.array([x[i].mean()]), np.arange(len(x)), block=1, reps=1000)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))  # normal theory: mean ± 1.96 sd / √n
    assert est[0] == pytest.approx(x.mean(), rel=1e-12)
    assert lo[0] == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert hi[0] == pytest.approx(x.mean() + half, abs=0.15 * half)


def test_block_bootstrap_covers_overlapping_labels_where_iid_does_not() -> None:
    h, n, sims = 8, 600, 100
    rng = np.random.default_rng(5)
    times = np.arange(n)
    covered = {1: 0, 3 * h: 0}
    for _ in range(sims):
        shocks = rng.normal(size=n + h - 1)
        y = np.convolve(shocks, np.ones(h), mode="valid")  # sum of h iid shocks: MA(h-1), mean 0
        for block in covered:
            _, lo, hi = block_bootstrap(lambda i, y=y: np.array([y[i].mean()]), times, block=block, reps=200,
                                        seed=int(rng.integers(1 << 30)))  # fmt: skip
            covered[block] += bool(lo[0] <= 0.0 <= hi[0])
    # iid resampling sees 1/h of the variance of the mean (sd ~√8 too small): coverage ~50%
    assert covered[3 * h] >= 85
    assert covered[3 * h] >= covered[1] + 20


def test_rows_sharing_a_timestamp_are_resampled_together() -> None:
    # two series per bar with opposite values: any resample of whole bars has mean exactly 0,
    # while resampling rows independently does not
    rng = np.random.default_rng(2)
    x = rng.normal(size=500)
    values = np.concatenate([x, -x])
    stamps = np.concatenate([np.arange(500), np.arange(500)]).astype("datetime64[h]")
    seen_pairs: list[bool] = []

    def stat(i: np.ndarray) -> np.ndarray:
        seen_pairs.append(bool(np.array_equal(np.sort(i[i < 500]), np.sort(i[i >= 500] - 500))))
        return np.array([values[i].sum() / len(i)])

    _, lo, hi = block_bootstrap(stat, stamps, block=5, reps=200)
    assert all(seen_pairs)
    assert abs(lo[0]) < 1e-12
    assert abs(hi[0]) < 1e-12
    _, lo, hi = block_bootstrap(lambda i: np.array([values[i].mean()]), np.arange(1000), block=5, reps=200)
    assert hi[0] - lo[0] > 0.05


def test_bootstrap_is_deterministic_and_skips_undefined_replicates() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=300)
    t = np.arange(300)

    m, se = x.mean(), x.std(ddof=1) / math.sqrt(len(x))

    def stat(i: np.ndarray) -> np.ndarray:
        # statistic 1 is undefined (None) in ~31% of replicates, statistic 2 (NaN) in ~69%
        mean = x[i].mean()
        return np.array([mean, mean if mean > m - 0.5 * se else None, mean if mean > m + 0.5 * se else NAN])

    first = block_bootstrap(stat, t, block=4, reps=300, seed=1)
    again = block_bootstrap(stat, t, block=4, reps=300, seed=1)
    other = block_bootstrap(stat, t, block=4, reps=300, seed=2)
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert first[1][0] != other[1][0]
    assert first.used[0] == 300
    assert 150 <= first.used[1] < 300
    assert first.used[2] < 150
    # the bounds of statistic 1 come from its finite replicates only, all above m - 0.5 se
    assert first.lower[1] > m - 0.5 * se
    assert first.upper[1] >= first.upper[0]  # the 97.5th percentile of the upper ~69%
    assert np.isnan(first.lower[2])
    assert np.isnan(first.upper[2])
    assert first.lower[0] < m < first.upper[0]
    default = block_bootstrap(stat, t, reps=10)
    assert default.block == 7  # max(2, ceil(300 ** (1/3))) = ceil(6.69) = 7
