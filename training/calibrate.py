"""Fit what the bundle carries for serving: the ``prob_up`` calibration and the no-trade band.

Both are fitted on the walk-forward folds' out-of-sample predictions only (rows each fold's model
never trained on), and recorded with the rows they were fitted on:

* the calibration is isotonic regression (``scipy.optimize.isotonic_regression``) of "the return
  was positive" on the score, kept as knots (see :mod:`tradeloop.calibration`). Its reliability is
  reported *cross-fitted*: each fold's probabilities come from a map fitted on the other folds, so
  the reliability table and Brier score are not judged on the rows that shaped the map;
* the band is the |score| threshold (from a fixed grid of score quantiles) whose signal earns the
  best Sharpe after costs over those same walk-forward rows. These rows are the final model's
  training folds, so the band's Sharpe is in-sample for the band and is labelled so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression

from tradeloop.calibration import prob_up

__all__ = ["brier", "choose_band", "fit_calibration", "reliability"]

PROB_FLOOR = 0.01  # no calibrated probability is more certain than 1 % / 99 %
BAND_QUANTILES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def fit_calibration(score: np.ndarray, up: np.ndarray) -> dict[str, Any]:
    """Isotonic map score → P(up) as knots; ``up`` is 1 where the realised return was positive."""
    score, up = np.asarray(score, dtype=np.float64), np.asarray(up, dtype=np.float64)
    keep = np.isfinite(score) & np.isfinite(up)
    score, up = score[keep], up[keep]
    if len(score) < 2:
        raise ValueError("calibration needs at least two out-of-sample rows")
    order = np.argsort(score, kind="stable")
    xs, ys = score[order], up[order]
    # equal scores must share one value: pool them before the monotone fit
    uniq, start, counts = np.unique(xs, return_index=True, return_counts=True)
    means = np.add.reduceat(ys, start) / counts
    fitted = isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x
    fitted = np.clip(fitted, PROB_FLOOR, 1 - PROB_FLOOR)
    # keep the first and last score of each constant run: the map between them is flat anyway
    edge = np.ones(len(fitted), dtype=bool)
    edge[1:-1] = (np.diff(fitted)[:-1] != 0) | (np.diff(fitted)[1:] != 0)
    return {
        "kind": "isotonic",
        "x": [float(v) for v in uniq[edge]],
        "y": [float(v) for v in fitted[edge]],
        "rows": len(score),
        "base_rate": float(np.mean(up)),
    }


def brier(prob: np.ndarray, up: np.ndarray) -> float:
    return float(np.mean((np.asarray(prob, dtype=np.float64) - up) ** 2))


def reliability(prob: np.ndarray, up: np.ndarray, bins: int = 10) -> list[dict[str, float | int]]:
    """Equal-count bins of predicted probability: mean prediction, observed frequency, rows."""
    order = np.argsort(prob, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, max(1, len(order)))):
        if len(part):
            out.append(
                {
                    "predicted": float(np.mean(prob[part])),
                    "observed": float(np.mean(up[part])),
                    "rows": len(part),
                }
            )
    return out


def cross_fitted(score: np.ndarray, up: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """P(up) per row from a map fitted on the other folds' rows only."""
    prob = np.full(len(score), np.nan)
    for k in np.unique(fold):
        mine = fold == k
        if (~mine).sum() >= 2:
            prob[mine] = prob_up(fit_calibration(score[~mine], up[~mine]), score[mine])
    return prob


def choose_band(score: np.ndarray, sharpe_of: Callable[[np.ndarray], float | None]) -> dict[str, Any]:
    """The threshold on |score| whose signal has the best Sharpe (``sharpe_of(signal scores)``)."""
    magnitude = np.abs(score[np.isfinite(score)])
    grid = []
    for q in BAND_QUANTILES:
        threshold = float(np.quantile(magnitude, q)) if q > 0 else 0.0
        gated = np.where(np.abs(score) > threshold, score, 0.0)
        sharpe = sharpe_of(gated)
        grid.append({"quantile": q, "threshold": threshold, "sharpe": sharpe})
    best = max(grid, key=lambda g: -np.inf if g["sharpe"] is None else g["sharpe"])
    return {
        "threshold": best["threshold"],
        "quantile": best["quantile"],
        "sharpe_in_sample": best["sharpe"],
        "grid": grid,
    }
