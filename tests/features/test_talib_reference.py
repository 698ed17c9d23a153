"""Our batch indicators agree with TA-Lib, an independent C implementation, on real bars.

Each indicator is recomputed by TA-Lib from the same canonical bars (imported with the project's
own importer) and compared with ``compute_features`` after the seeding has settled. Two
conventions differ on purpose (see :mod:`tradeloop.features.spec`), and both only change the start:

* our exponential averages (EMA, MACD, Wilder RSI and ATR) are seeded with their first input,
  TA-Lib's with the SMA of the first ``period`` inputs. Both then run the same recurrence, so the
  gap shrinks by ``(1 - alpha)`` per bar; we compare from where it is far below float32 rounding;
* before the first bar we take the previous close to be its open, so our RSI delta and true
  range exist on bar 0, while TA-Lib starts them on bar 1. That is part of the same decaying seed.

Windowed statistics (SMA, Bollinger) have no seed: they must agree on every bar, NaN head included.

Features are float32 computed in float64, so the tolerance is a few float32 ulps of the value
(``RTOL``) plus ``ATOL`` of the close price for values near zero. Every family also asserts that
TA-Lib with a neighbouring period misses that tolerance, so a wrong period or smoothing would fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import talib  # pinned in requirements.lock (dev); 0.8 wheels bundle the C library

from tests.conftest import market_file
from tradeloop.bars.importer import import_file
from tradeloop.bars.store import BarStore
from tradeloop.config import Settings
from tradeloop.features import spec
from tradeloop.features.batch import compute_features, ema

FILES = ("BTCUSDT_1h.csv", "GOOG_1d.csv", "EURUSD_1h.csv")
RTOL = 2e-7  # float32 keeps 24 bits: rounding is at most 2**-24 ≈ 6e-8 of the value
ATOL = 1e-8  # of the close price (or of RSI's [0, 1] range), for values that cross zero
SETTLED = 1e-8  # the seeding gap, as a fraction of its initial size, before we compare


def settle_bars(*alphas: float) -> int:
    """Bars until a chain of exponential averages has shrunk a seeding gap below :data:`SETTLED`.

    One average multiplies the gap by ``1 - alpha`` each bar; for a chain (MACD's signal averages
    the MACD line) we add the bars each stage needs, which over-covers the cascade.
    """
    return sum(math.ceil(math.log(SETTLED) / math.log(1.0 - a)) for a in alphas)


@dataclass(frozen=True)
class Case:
    name: str
    features: pd.DataFrame  # compute_features output, float32 columns
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    def ours(self, column: str) -> np.ndarray:
        return self.features[column].to_numpy(dtype=np.float64)


@pytest.fixture(scope="module", params=FILES)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    """Canonical bars of one real file, as the importer stores them, and our features for them."""
    name = request.param
    settings = Settings.load(tmp_path_factory.mktemp("home"))
    import_file(market_file(name), settings)
    symbol, tf = name.removesuffix(".csv").split("_")
    bars = BarStore(settings).read(symbol, tf)
    assert len(bars) > 1000, f"{name}: too few bars to get past the warm-up"
    o, h, low, c = (bars[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    return Case(name, compute_features(bars), o, h, low, c)


def misfit(ours: np.ndarray, ref: np.ndarray, start: int = 0) -> float:
    """Largest |ours - ref| in units of the tolerance ``ATOL + RTOL·|ref|`` from ``start`` on.

    ≤ 1 means agreement; a NaN on one side only counts as a miss, NaN on both as agreement.
    """
    a, b = ours[start:], ref[start:]
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        units = np.abs(a - b) / (ATOL + RTOL * np.abs(b))
    units = np.where(both_nan, 0.0, units)
    return float(np.nan_to_num(units, nan=np.inf).max())


def check(case: Case, column: str, ref: np.ndarray, wrong: np.ndarray, start: int) -> None:
    """``column`` agrees with ``ref`` from ``start`` on; ``wrong`` (a neighbouring period) is > 10× off."""
    assert start < len(case.close) - 500, "comparison window too short to mean anything"
    ours = case.ours(column)
    assert not np.isnan(ours[max(start, spec.WARMUP) :]).any(), f"{case.name} {column}: NaN after warm-up"
    got = misfit(ours, ref, start)
    assert got <= 1.0, f"{case.name} {column}: off by {got:.3g}× the tolerance from row {start}"
    near_miss = misfit(ours, wrong, max(start, spec.WARMUP))  # on values, not on a NaN head one bar off
    assert near_miss > 10.0, f"{case.name} {column}: tolerance too loose to tell a wrong period"


def test_rsi_is_talib_wilder_rsi_over_100(case: Case) -> None:
    """RSI 14 is Wilder's RSI in [0, 1]; TA-Lib's SMA seed over bars 1..14 decays at 13/14 a bar."""
    start = max(spec.WARMUP, spec.RSI_PERIOD + settle_bars(spec.wilder_alpha(spec.RSI_PERIOD)))
    ref = talib.RSI(case.close, timeperiod=14) / 100.0
    wrong = talib.RSI(case.close, timeperiod=13) / 100.0
    check(case, "rsi_14", ref, wrong, start)


def test_macd_signal_and_histogram_are_talib_macd_over_close(case: Case) -> None:
    """MACD(12, 26, 9) / close; TA-Lib seeds both EMAs and the signal with SMAs (first output 33)."""
    refs = talib.MACD(case.close, fastperiod=12, slowperiod=26, signalperiod=9)
    first_valid = int(np.argmax(~np.isnan(refs[0])))
    start = max(
        spec.WARMUP,
        first_valid + settle_bars(spec.ema_alpha(spec.MACD_SLOW), spec.ema_alpha(spec.MACD_SIGNAL)),
    )
    wrongs = (
        talib.MACD(case.close, fastperiod=12, slowperiod=25, signalperiod=9)[0],
        talib.MACD(case.close, fastperiod=12, slowperiod=26, signalperiod=8)[1],
        talib.MACD(case.close, fastperiod=12, slowperiod=26, signalperiod=8)[2],
    )
    for column, ref, wrong in zip(("macd", "macd_signal", "macd_hist"), refs, wrongs, strict=True):
        check(case, column, ref / case.close, wrong / case.close, start)


def test_bollinger_pctb_and_width_are_talib_bbands_sma_population_std(case: Case) -> None:
    """Bollinger(20, 2σ) with an SMA middle and population std, on every bar including the NaN head.

    Where a window is flat TA-Lib's %b is 0/0; ours is documented as 0.5 there.
    """
    upper, middle, lower = talib.BBANDS(case.close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pctb = (case.close - lower) / (upper - lower)
        flat = upper == lower
        pctb[flat] = 0.5
        width = (upper - lower) / middle
        w_upper, w_middle, w_lower = talib.BBANDS(case.close, 19, 2.0, 2.0, matype=0)
        wrong_pctb = (case.close - w_lower) / (w_upper - w_lower)
        wrong_width = (w_upper - w_lower) / w_middle
    assert np.isnan(case.ours("bb_width")[: spec.BB_PERIOD - 1]).all()
    check(case, "bb_pctb", pctb, wrong_pctb, 0)
    check(case, "bb_width", width, wrong_width, 0)


def test_bollinger_width_uses_population_not_sample_std(case: Case) -> None:
    """Sample std (ddof=1) would widen the bands by sqrt(20/19) ≈ 2.6%: far outside the tolerance."""
    upper, middle, lower = talib.BBANDS(case.close, 20, 2.0, 2.0, matype=0)
    sample_width = (upper - lower) / middle * math.sqrt(20 / 19)
    assert misfit(case.ours("bb_width"), sample_width, spec.WARMUP) > 1e3


def test_atr_is_talib_wilder_atr_over_close(case: Case) -> None:
    """ATR 14 / close. TA-Lib's true range starts on bar 1 and its ATR is seeded with the SMA of
    the first 14; ours takes bar 0's previous close to be its open and seeds with TR[0]."""
    start = max(spec.WARMUP, spec.ATR_PERIOD + settle_bars(spec.wilder_alpha(spec.ATR_PERIOD)))
    ref = talib.ATR(case.high, case.low, case.close, timeperiod=14) / case.close
    wrong = talib.ATR(case.high, case.low, case.close, timeperiod=13) / case.close
    check(case, "atr_14_ratio", ref, wrong, start)


@pytest.mark.parametrize("period", spec.EMA_PERIODS)
def test_ema_ratio_is_close_over_talib_ema(case: Case, period: int) -> None:
    """close / EMA(period) - 1 once our first-input seed and TA-Lib's SMA seed have converged."""
    start = max(spec.WARMUP, period - 1 + settle_bars(spec.ema_alpha(period)))
    ref = case.close / talib.EMA(case.close, timeperiod=period) - 1.0
    wrong = case.close / talib.EMA(case.close, timeperiod=period + 1) - 1.0
    check(case, f"ema_{period}_ratio", ref, wrong, start)


@pytest.mark.parametrize("period", spec.SMA_PERIODS)
def test_sma_ratio_is_close_over_talib_sma_on_every_bar(case: Case, period: int) -> None:
    """close / SMA(period) - 1 has no seed: it matches TA-Lib from the first full window (NaN before)."""
    ref = case.close / talib.SMA(case.close, timeperiod=period) - 1.0
    wrong = case.close / talib.SMA(case.close, timeperiod=period - 1) - 1.0
    check(case, f"sma_{period}_ratio", ref, wrong, 0)


@pytest.mark.parametrize("period", sorted({*spec.EMA_PERIODS, spec.MACD_FAST, spec.MACD_SLOW}))
def test_ema_seed_gap_to_talib_shrinks_by_exactly_one_minus_alpha_per_bar(case: Case, period: int) -> None:
    """The documented seeding difference, checked directly on the float64 EMA.

    From TA-Lib's seed bar on, both sides run y[t] = α·x[t] + (1-α)·y[t-1] with α = 2/(period+1),
    so their difference must be multiplied by exactly (1-α) each bar. A different α on our side
    would leave an input-dependent residue in that ratio.
    """
    alpha = spec.ema_alpha(period)
    ours = ema(case.close, alpha)
    gap = ours - talib.EMA(case.close, timeperiod=period)
    seed = period - 1
    steps = gap[seed + 1 : seed + 41]
    assert np.abs(gap[seed]) > 1e-6 * case.close[seed], "no seeding gap to follow on this file"
    roundoff = 1e-14 * case.close[seed]  # float64 rounding of two EMAs of this price
    np.testing.assert_allclose(steps, gap[seed : seed + 40] * (1.0 - alpha), rtol=1e-7, atol=roundoff)
    off = ema(case.close, spec.ema_alpha(period + 1)) - talib.EMA(case.close, timeperiod=period)
    off_steps = off[seed + 1 : seed + 41]
    assert not np.allclose(off_steps, off[seed : seed + 40] * (1.0 - alpha), rtol=1e-7, atol=roundoff)
