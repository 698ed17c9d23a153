"""The feature spec: one list of names, lookbacks and constants that both paths compute from.

``batch`` (whole history, vectorised) and ``streaming`` (one bar at a time from carried state)
both read their parameters from here, so changing a feature means changing it in one place and
bumping :data:`SPEC_VERSION`. Every feature is stationary (returns, ratios to close, bounded
oscillators) so that one model pools across symbols.

Conventions both paths share: before the first bar the previous close is taken to be its open;
exponential averages are seeded with their first input; windowed statistics are population
(ddof=0) and NaN until their window is full. Rows before :data:`WARMUP` carry seeding bias and are
not used for training or parity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tradeloop.bars.schema import ASSET_CLASSES, TIMEFRAMES

__all__ = [
    "CHANNELS",
    "FEATURE_NAMES",
    "INDICATORS",
    "METADATA",
    "SPEC_VERSION",
    "WARMUP",
    "WINDOW",
    "FeatureDef",
    "metadata_values",
]

SPEC_VERSION = "1"

RET_HORIZONS = (1, 3, 6, 12, 24)
SMA_PERIODS = (7, 14, 30)
EMA_PERIODS = (12, 26)
BB_PERIOD, BB_K = 20, 2.0
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
ATR_PERIOD = 14
RVOL_PERIOD = 20
VOLZ_PERIOD = 20
CHANNEL_SPAN = 64  # span of the past-only EW scale that normalises CNN channels
CHANNEL_CLIP = 20.0
VAR_FLOOR = 1e-12  # added to EW variances so a flat market cannot divide by zero
FLAT_STD = 1e-10  # a window whose std is below FLAT_STD × |mean| counts as flat

WINDOW = 64  # default CNN window length W
WARMUP = 120  # bars before features are valid: longest lookback plus EMA seeding decay


def ema_alpha(span: int) -> float:
    """Smoothing factor of an EMA with the usual span convention, 2 / (span + 1)."""
    return 2.0 / (span + 1.0)


def wilder_alpha(period: int) -> float:
    """Wilder's smoothing (RSI, ATR) is an EMA with alpha 1 / period."""
    return 1.0 / period


@dataclass(frozen=True, slots=True)
class FeatureDef:
    """One feature: its column name, the bars it looks back over, dtype and meaning."""

    name: str
    lookback: int
    description: str
    dtype: str = "float32"


INDICATORS: tuple[FeatureDef, ...] = (
    *(FeatureDef(f"ret_{k}", k + 1, f"log return over {k} bars") for k in RET_HORIZONS),
    *(FeatureDef(f"sma_{n}_ratio", n, f"close / SMA{n} - 1") for n in SMA_PERIODS),
    *(FeatureDef(f"ema_{n}_ratio", 4 * n, f"close / EMA{n} - 1") for n in EMA_PERIODS),
    FeatureDef("bb_pctb", BB_PERIOD, "Bollinger %b (20, 2σ); 0.5 when the window is flat"),
    FeatureDef("bb_width", BB_PERIOD, "Bollinger band width / middle band"),
    FeatureDef("rsi_14", 4 * RSI_PERIOD, "Wilder RSI(14) scaled to [0, 1]"),
    FeatureDef("macd", 4 * MACD_SLOW, "MACD(12, 26) / close"),
    FeatureDef("macd_signal", 4 * MACD_SLOW, "MACD signal (9) / close"),
    FeatureDef("macd_hist", 4 * MACD_SLOW, "(MACD - signal) / close"),
    FeatureDef("atr_14_ratio", 4 * ATR_PERIOD, "Wilder ATR(14) / close"),
    FeatureDef("rvol_20", RVOL_PERIOD + 1, "std of 1-bar log returns over 20 bars"),
    FeatureDef("volume_z_20", VOLZ_PERIOD, "volume z-score over 20 bars; 0 when flat"),
    FeatureDef("hl_range", 1, "(high - low) / close"),
    FeatureDef("body", 1, "log(close / open)"),
)

CHANNELS: tuple[str, ...] = (
    "ch_ret",  # log(c / c_prev) / σ
    "ch_gap",  # log(o / c_prev) / σ
    "ch_upper",  # log(h / max(o, c)) / σ
    "ch_lower",  # log(min(o, c) / l) / σ
    "ch_body",  # log(c / o) / σ
    "ch_range",  # log(h / l) / σ
    "ch_volume",  # EW z-score of log1p(volume)
)

METADATA: tuple[str, ...] = ("asset_class_id", "tf_log_minutes")

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in INDICATORS)


def metadata_values(asset_class: str, timeframe: str) -> tuple[float, float]:
    """Numeric market metadata for XGBoost: asset-class index and log of the bar minutes."""
    return float(ASSET_CLASSES.index(asset_class)), math.log(TIMEFRAMES[timeframe].minutes)
