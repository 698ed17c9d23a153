"""Walk-forward metrics for the model, its parts, the naive baselines and the shuffled control.

Every predictor is scored on exactly the same rows: the union of the folds' test windows. A
prediction is a forward log return (the model's z-score times the row's past-only volatility), so
RMSE is in return units and direction is its sign. Baselines need no fitting beyond the past:
*persistence* predicts the last h-bar return again, *always-long* predicts the mean return of the
fold's own training rows (positive sign forced: it is always long).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from tradeloop.features import spec
from training.backtest import BacktestResult, backtest
from training.datasets import Dataset, Plan

__all__ = [
    "CHANCE_SIGMAS",
    "chance_bounds",
    "evaluate",
    "gate_metrics",
    "point_metrics",
    "walk_forward_baselines",
]

CHANCE_SIGMAS = 4.0  # a predictor that knows nothing lands within this many binomial σ of chance
HEADLINE = ("directional_accuracy", "ic", "rank_ic", "rmse", "sharpe", "max_drawdown", "hit_rate", "turnover")


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def point_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float | int | None]:
    """Directional accuracy (on rows that moved), IC, rank IC and RMSE of return predictions."""
    moved = y != 0
    return {
        "n": len(y),
        "directional_accuracy": float(np.mean(np.sign(pred[moved]) == np.sign(y[moved])))
        if moved.any()
        else None,
        "ic": _corr(pred, y),
        "rank_ic": _corr(rankdata(pred), rankdata(y)),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
    }


def chance_bounds(y: np.ndarray) -> dict[str, float]:
    """Accuracy band of a predictor independent of the labels, and the matching |IC| bound."""
    moved = y[y != 0]
    p = float(np.mean(moved > 0)) if len(moved) else 0.5
    sigma = 0.5 / np.sqrt(max(len(moved), 1))
    return {
        "up_rate": p,
        "accuracy_low": min(p, 1 - p) - CHANCE_SIGMAS * sigma,
        "accuracy_high": max(p, 1 - p) + CHANCE_SIGMAS * sigma,
        "abs_ic_max": CHANCE_SIGMAS / np.sqrt(max(len(y), 1)),
    }


def walk_forward_baselines(data: Dataset, plan: Plan) -> dict[str, np.ndarray]:
    """Persistence and always-long predictions on every fold's test rows (NaN elsewhere)."""
    h = data.horizon
    persistence = np.full(len(data), np.nan)
    always_long = np.full(len(data), np.nan)
    name = f"ret_{h}" if f"ret_{h}" in spec.FEATURE_NAMES else "ret_1"
    factor = 1.0 if name == f"ret_{h}" else float(h)  # no h-bar return feature: scale the 1-bar one
    for fold in plan.folds:
        idx = np.flatnonzero(fold.test)
        persistence[idx] = data.indicator(name, idx) * factor
        always_long[idx] = max(float(np.mean(data.y[fold.train])), 1e-12)
    return {"persistence": persistence, "always_long": always_long}


def _bt(data: Dataset, idx: np.ndarray, pred: np.ndarray, cost_bps: float) -> BacktestResult:
    series = [(s.timeframe, s.asset_class) for s in data.series]
    return backtest(
        pred, data.y[idx], data.ts[idx], data.sid[idx], series, horizon=data.horizon, cost_bps=cost_bps
    )


def gate_metrics(data: Dataset, idx: np.ndarray, pred: np.ndarray, cost_bps: float) -> dict[str, Any]:
    """The numbers the promotion gate compares, for predictions ``pred`` (all samples) on ``idx``."""
    pm = point_metrics(pred[idx], data.y[idx])
    return {
        "directional_accuracy": pm["directional_accuracy"],
        "ic": pm["ic"],
        "sharpe": _bt(data, idx, pred[idx], cost_bps).sharpe,
    }


def evaluate(
    data: Dataset, plan: Plan, preds: dict[str, np.ndarray], *, cost_bps: float
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(report, equity curves): overall and per-fold metrics of every predictor in ``preds``.

    ``preds`` maps a name to return predictions over all samples, NaN outside the test windows.
    """
    test = np.zeros(len(data), dtype=bool)
    for fold in plan.folds:
        test |= fold.test
    idx = np.flatnonzero(test)
    models: dict[str, Any] = {}
    curves: dict[str, dict[str, Any]] = {}
    for name, pred in preds.items():
        bt = _bt(data, idx, pred[idx], cost_bps)
        overall = point_metrics(pred[idx], data.y[idx]) | bt.to_dict()
        per_fold = [
            {"fold": fold.index, **gate_metrics(data, np.flatnonzero(fold.test), pred, cost_bps)}
            for fold in plan.folds
        ]
        models[name] = {"overall": overall, "folds": per_fold}
        curves[name] = bt.equity
    chance = chance_bounds(data.y[idx])
    control = models.get("shuffled_control", {}).get("overall")
    report = {
        "rows": len(idx),
        "folds": [
            {
                "fold": f.index,
                "start": f.start.isoformat(),
                "end": f.end.isoformat(),
                "train_rows": int(f.train.sum()),
                "test_rows": int(f.test.sum()),
            }
            for f in plan.folds
        ],
        "series": sorted(s.series_id for s in data.series),
        "models": models,
        "chance": chance,
        "control_at_chance": None if control is None else at_chance(control, chance),
    }
    return report, curves


def at_chance(metrics: dict[str, Any], chance: dict[str, float]) -> bool:
    """True when accuracy and IC lie inside the band a label-blind predictor would land in."""
    acc, ic = metrics["directional_accuracy"], metrics["ic"]
    in_band = acc is None or chance["accuracy_low"] <= acc <= chance["accuracy_high"]
    return bool(in_band and (ic is None or abs(ic) <= chance["abs_ic_max"]))


def headline_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Rows of the model-vs-baseline table: one per predictor, :data:`HEADLINE` columns."""
    rows = []
    for name, entry in report["models"].items():
        o = entry["overall"]
        rows.append([name, *(o.get(k) for k in HEADLINE)])
    return rows
