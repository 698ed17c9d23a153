"""Vectorised feature computation over a whole series (the training and backfill path).

Computes in float64 and returns float32 columns in spec order. Exponential averages run through
``scipy.signal.lfilter`` with the same recurrence and seeding as :mod:`.streaming`; windowed
sums add the same values in the same order as the streaming ``sum(window)`` and standard
deviations are two-pass (no cumulative-sum cancellation), so the two paths agree to float
rounding on every bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from tradeloop.features import spec

__all__ = ["channel_matrix", "compute_features", "ema", "feature_matrix", "indicator_matrix"]


def ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """y[t] = alpha·x[t] + (1-alpha)·y[t-1], seeded so that y[0] = x[0]."""
    if len(x) == 0:
        return x.copy()
    keep = 1.0 - alpha
    y, _ = lfilter([alpha], [1.0, -keep], x, zi=[keep * x[0]])
    return y


def _ew_var(x: np.ndarray, mean: np.ndarray, alpha: float) -> np.ndarray:
    """EW variance: v[t] = (1-α)·v[t-1] + (1-α)·α·(x[t] - m[t-1])², v[0] = 0."""
    keep = 1.0 - alpha
    d = np.empty_like(x)
    d[0] = 0.0
    d[1:] = x[1:] - mean[:-1]
    y, _ = lfilter([keep * alpha], [1.0, -keep], d * d, zi=[0.0])
    return y


def _window_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sum over each trailing window of ``n`` (length len(x) - n + 1), added oldest first.

    Adding n shifted slices keeps each sum in the same order as the streaming path's
    ``sum(window)``, and runs as n contiguous vector additions.
    """
    m = len(x) - n + 1
    total = x[:m].copy()
    for j in range(1, n):
        total += x[j : j + m]
    return total


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing mean over windows of ``n``; NaN until the first window is full."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        out[n - 1 :] = _window_sum(x, n) / n
    return out


def _rolling_mean_std(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass population mean and std over trailing windows of ``n``; NaN before the first."""
    mean = np.full(len(x), np.nan)
    std = np.full(len(x), np.nan)
    if len(x) < n:
        return mean, std
    m = len(x) - n + 1
    mu = _window_sum(x, n) / n
    ssq = np.zeros(m)
    dev = np.empty(m)
    for j in range(n):
        np.subtract(x[j : j + m], mu, out=dev)
        dev *= dev
        ssq += dev
    mean[n - 1 :] = mu
    std[n - 1 :] = np.sqrt(ssq / n)
    return mean, std


def _ohlcv(bars: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(bars[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume"))


def _prev_close(o: np.ndarray, c: np.ndarray) -> np.ndarray:
    prev = np.empty_like(c)
    prev[1:] = c[:-1]
    prev[:1] = o[:1]  # before the first bar, the previous close is its open
    return prev


def channel_matrix(bars: pd.DataFrame, out: np.ndarray | None = None) -> np.ndarray:
    """Past-only normalised per-bar CNN channels, shape (n, C), float32, in spec order.

    Each bar's channels use only that bar and earlier ones, so any window of rows is past-only.
    """
    o, h, low, c, v = _ohlcv(bars)
    if out is None:
        out = np.empty((len(c), len(spec.CHANNELS)), dtype=np.float32, order="F")
    if len(c) == 0:
        return out
    prev = _prev_close(o, c)
    r1 = np.log(c / prev)
    alpha = spec.ema_alpha(spec.CHANNEL_SPAN)
    sigma = np.sqrt(ema(r1 * r1, alpha) + spec.VAR_FLOOR)
    lv = np.log1p(v)
    lv_mean = ema(lv, alpha)
    lv_std = np.sqrt(_ew_var(lv, lv_mean, alpha) + spec.VAR_FLOOR)
    columns = (
        r1 / sigma,
        np.log(o / prev) / sigma,
        np.log(h / np.maximum(o, c)) / sigma,
        np.log(np.minimum(o, c) / low) / sigma,
        np.log(c / o) / sigma,
        np.log(h / low) / sigma,
        (lv - lv_mean) / lv_std,
    )
    for j, values in enumerate(columns):
        out[:, j] = np.clip(values, -spec.CHANNEL_CLIP, spec.CHANNEL_CLIP)
    return out


def indicator_matrix(bars: pd.DataFrame, out: np.ndarray | None = None) -> np.ndarray:
    """Indicators for every bar, shape (n, len(INDICATORS)), float32, NaN before each lookback.

    ``out``, when given, is filled in place (a column-major float32 view avoids copies).
    """
    o, h, low, c, v = _ohlcv(bars)
    n = len(c)
    if out is None:
        out = np.empty((n, len(spec.INDICATORS)), dtype=np.float32, order="F")
    out[: max(spec.RET_HORIZONS)] = np.nan  # lookback heads; later columns are written whole
    prev = _prev_close(o, c)
    r1 = np.log(c / prev)
    j = 0
    for k in spec.RET_HORIZONS:
        out[k:, j] = np.log(c[k:] / c[:-k])
        j += 1
    for p in spec.SMA_PERIODS:
        out[:, j] = c / _rolling_mean(c, p) - 1.0
        j += 1
    emas = {p: ema(c, spec.ema_alpha(p)) for p in {*spec.EMA_PERIODS, spec.MACD_FAST, spec.MACD_SLOW}}
    for p in spec.EMA_PERIODS:
        out[:, j] = c / emas[p] - 1.0
        j += 1

    mid, sd = _rolling_mean_std(c, spec.BB_PERIOD)
    with np.errstate(invalid="ignore", divide="ignore"):
        pctb = (c - (mid - spec.BB_K * sd)) / (2 * spec.BB_K * sd)
        pctb[sd <= spec.FLAT_STD * np.abs(mid)] = 0.5
        out[:, j] = pctb
        out[:, j + 1] = 2 * spec.BB_K * sd / mid
    j += 2

    delta = c - prev
    wilder = spec.wilder_alpha(spec.RSI_PERIOD)
    gain, loss = ema(np.maximum(delta, 0.0), wilder), ema(np.maximum(-delta, 0.0), wilder)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = gain / total
    rsi[~(total > 0)] = 0.5
    out[:, j] = rsi

    macd = emas[spec.MACD_FAST] - emas[spec.MACD_SLOW]
    signal = ema(macd, spec.ema_alpha(spec.MACD_SIGNAL))
    out[:, j + 1] = macd_c = macd / c
    out[:, j + 2] = signal_c = signal / c
    out[:, j + 3] = macd_c - signal_c

    tr = np.maximum(h - low, np.maximum(np.abs(h - prev), np.abs(low - prev)))
    out[:, j + 4] = ema(tr, spec.wilder_alpha(spec.ATR_PERIOD)) / c
    out[:, j + 5] = _rolling_mean_std(r1, spec.RVOL_PERIOD)[1]
    vmean, vsd = _rolling_mean_std(v, spec.VOLZ_PERIOD)
    with np.errstate(invalid="ignore", divide="ignore"):
        volz = (v - vmean) / vsd
        volz[vsd <= spec.FLAT_STD * np.abs(vmean)] = 0.0
    out[:, j + 6] = volz
    out[:, j + 7] = (h - low) / c
    out[:, j + 8] = np.log(c / o)
    assert j + 9 == out.shape[1], "indicator columns out of step with spec.INDICATORS"
    return out


def feature_matrix(bars: pd.DataFrame) -> np.ndarray:
    """Indicators then channels for every bar, shape (n, F + C), float32 column-major."""
    n_ind = len(spec.INDICATORS)
    out = np.empty((len(bars), n_ind + len(spec.CHANNELS)), dtype=np.float32, order="F")
    indicator_matrix(bars, out[:, :n_ind])
    channel_matrix(bars, out[:, n_ind:])
    return out


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """``ts`` plus every indicator and channel column (float32) for canonical ``bars``."""
    out = pd.DataFrame(feature_matrix(bars), columns=[*spec.FEATURE_NAMES, *spec.CHANNELS], copy=False)
    out.insert(0, "ts", bars["ts"].reset_index(drop=True))
    return out
