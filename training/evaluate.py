"""Walk-forward metrics for the model, its parts, the naive baselines and the shuffled control.

Every predictor is scored on exactly the same rows (each fold's test rows) by the same rules
(:mod:`tradeloop.metrics`: a zero prediction is "no call" and scores 0.5, flat-return rows are
excluded for everyone; :mod:`training.backtest`: overlapping h-bar positions, per-asset-class
costs, a fold with no positions has Sharpe 0). A prediction is a forward log return (the model's
z-score times the row's past-only volatility). Baselines need no fitting beyond the past:
*persistence* predicts the last h-bar return again, *always-long* predicts the mean return of the
fold's own training rows (forced positive: it is always long).

Edges over the baselines carry block-bootstrap intervals over time (blocks of at least h bars,
all series of one timestamp together), because overlapping labels and correlated series make
rows far from independent. Every number says which rows it was computed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from tradeloop.features import spec
from tradeloop.metrics import block_bootstrap, point_metrics
from training.backtest import BacktestResult, SeriesReturns, backtest
from training.datasets import Dataset, Plan

__all__ = [
    "BASELINES",
    "LABEL",
    "METRIC_RULES",
    "context",
    "evaluate",
    "fold_metrics",
    "headline_rows",
    "run_backtest",
    "walk_forward_baselines",
]

HEADLINE = ("directional_accuracy", "ic", "rank_ic", "rmse", "sharpe", "max_drawdown", "hit_rate", "turnover")
BASELINES = ("always_long", "persistence", "shuffled_control")
LABEL = "log(close[t+h] / close[t]), bar t+h counted in the series' stored rows"
METRIC_RULES = (
    "2: zero prediction scores 0.5 on moved rows, flat-return rows excluded for all; overlapping "
    "h-bar positions with per-asset-class costs; no positions in a fold = Sharpe 0"
)
LEVEL = 0.95
CONTROL_LEVEL = 0.99
BOOTSTRAP_REPS = 400


def context(data: Dataset, costs: Mapping[str, float]) -> dict[str, Any]:
    """What must match before two evaluations' folds are comparable (see ``training.gate``)."""
    return {
        "horizon": data.horizon,
        "window": data.window,
        "label": LABEL,
        "spec_version": spec.SPEC_VERSION,
        "cost_bps": {k: float(v) for k, v in sorted(costs.items())},
        "metric_rules": METRIC_RULES,
        "series": sorted(s.series_id for s in data.series),
    }


def series_returns(data: Dataset) -> list[SeriesReturns]:
    return [SeriesReturns(s.timeframe, s.asset_class, s.ts, s.ret1, s.series_id) for s in data.series]


def run_backtest(
    data: Dataset, idx: np.ndarray, pred: np.ndarray, costs: Mapping[str, float]
) -> BacktestResult:
    """Backtest ``pred`` (one value per row of ``idx``) on those rows."""
    return backtest(
        pred, data.sid[idx], data.row[idx], series_returns(data), horizon=data.horizon, cost_bps=costs
    )


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


def _rows(data: Dataset, idx: np.ndarray) -> dict[str, Any]:
    ts = pd.DatetimeIndex(data.ts[idx], tz="UTC")
    return {
        "rows": len(idx),
        "start": ts.min().isoformat() if len(idx) else None,
        "end": ts.max().isoformat() if len(idx) else None,
        "series": sorted({data.series[s].series_id for s in np.unique(data.sid[idx])}),
    }


def fold_metrics(
    data: Dataset, idx: np.ndarray, pred: np.ndarray, costs: Mapping[str, float]
) -> dict[str, Any]:
    """The numbers the gate compares, for predictions ``pred`` (all samples) on rows ``idx``."""
    pm = point_metrics(pred[idx], data.y[idx])
    bt = run_backtest(data, idx, pred[idx], costs)
    return {
        "directional_accuracy": pm["directional_accuracy"],
        "ic": pm["ic"],
        "rank_ic": pm["rank_ic"],
        "sharpe": bt.sharpe,
        "rows": len(idx),
    }


def _accuracy_scores(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row accuracy credit under the one rule: 1 right, 0.5 no call, 0 wrong, NaN flat bar."""
    credit = np.where(np.sign(pred) == np.sign(y), 1.0, 0.0)
    credit = np.where(pred == 0, 0.5, credit)
    return np.where(y == 0, np.nan, credit)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return np.nan
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return np.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _interval(point: float, low: float, high: float) -> dict[str, float | None]:
    def clean(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    return {"edge": clean(point), "low": clean(low), "high": clean(high)}


def _edges(data: Dataset, idx: np.ndarray, preds: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """Model's accuracy and rank-IC edges over each baseline, and the control's chance test."""
    y = data.y[idx]
    names = ["model", *(b for b in BASELINES if b in preds)]
    p = {n: preds[n][idx] for n in names}
    acc = {n: _accuracy_scores(p[n], y) for n in names}
    moved = y != 0
    block = max(data.horizon, int(np.ceil(len(np.unique(data.ts[idx])) ** (1 / 3))), 2)

    def stat(r: np.ndarray) -> np.ndarray:
        a = {n: np.nanmean(acc[n][r]) if np.isfinite(acc[n][r]).any() else np.nan for n in names}
        ric = {n: _spearman(p[n][r], y[r]) for n in names}
        out = [a["model"], ric["model"]]
        for b in names[1:]:
            out += [a["model"] - a[b], ric["model"] - ric[b]]
        return np.asarray(out, dtype=np.float64)

    point, low, high = block_bootstrap(
        stat, data.ts[idx], block=block, reps=BOOTSTRAP_REPS, seed=seed, level=LEVEL
    )
    out: dict[str, Any] = {
        "rank_ic": {"value": _clean(point[1]), "low": _clean(low[1]), "high": _clean(high[1])},
        "accuracy_edge": {},
        "rank_ic_edge": {},
        "block": block,
        "reps": BOOTSTRAP_REPS,
        "level": LEVEL,
    }
    for j, b in enumerate(names[1:]):
        out["accuracy_edge"][b] = _interval(point[2 + 2 * j], low[2 + 2 * j], high[2 + 2 * j])
        out["rank_ic_edge"][b] = _interval(point[3 + 2 * j], low[3 + 2 * j], high[3 + 2 * j])
    if "shuffled_control" in preds:
        c = p["shuffled_control"]

        def chance(r: np.ndarray) -> np.ndarray:
            m = moved[r]
            calls, ups = np.sign(c[r][m]), y[r][m] > 0
            q = float(np.mean(np.where(calls == 0, 0.5, calls > 0))) if m.any() else np.nan
            up = float(np.mean(ups)) if m.any() else np.nan
            blind = q * up + (1 - q) * (1 - up)  # accuracy of any label-blind caller with that up-rate
            got = np.nanmean(acc["shuffled_control"][r]) if m.any() else np.nan
            return np.asarray([got - blind, _spearman(c[r], y[r])], dtype=np.float64)

        cp, cl, ch = block_bootstrap(
            chance, data.ts[idx], block=block, reps=BOOTSTRAP_REPS, seed=seed + 1, level=CONTROL_LEVEL
        )
        inside = [
            bool(np.isfinite(lo) and np.isfinite(hi) and lo <= 0 <= hi) for lo, hi in zip(cl, ch, strict=True)
        ]
        out["control"] = {
            "accuracy_minus_label_blind": _interval(cp[0], cl[0], ch[0]),
            "rank_ic": _interval(cp[1], cl[1], ch[1]),
            "level": CONTROL_LEVEL,
            "at_chance": all(inside),
        }
    return out


def _clean(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def evaluate(
    data: Dataset, plan: Plan, preds: dict[str, np.ndarray], *, costs: Mapping[str, float], seed: int = 0
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(report, equity curves): overall and per-fold metrics of every predictor in ``preds``,
    edges with intervals, and the first-champion criteria the gate reads.

    ``preds`` maps a name to return predictions over all samples, NaN outside the test windows.
    """
    idx = np.flatnonzero(plan.test)
    models: dict[str, Any] = {}
    curves: dict[str, dict[str, Any]] = {}
    predictors: dict[str, list[dict[str, Any]]] = {}
    for name, pred in preds.items():
        bt = run_backtest(data, idx, pred[idx], costs)
        overall = point_metrics(pred[idx], data.y[idx]) | bt.to_dict()
        per_fold = [
            {"fold": fold.index, **fold_metrics(data, np.flatnonzero(fold.test), pred, costs)}
            for fold in plan.folds
        ]
        models[name] = {"overall": overall, "folds": per_fold}
        predictors[name] = per_fold
        curves[name] = bt.equity
    edges = _edges(data, idx, preds, seed)
    rows = _rows(data, idx)
    accuracy = {name: models[name]["overall"]["directional_accuracy"] for name in models}
    criteria = {
        **{k: rows[k] for k in ("rows", "start", "end")},
        "accuracy": accuracy,
        "accuracy_edge": edges["accuracy_edge"],
        "rank_ic": edges["rank_ic"],
        "rank_ic_edge": edges["rank_ic_edge"],
        "sharpe": {n: models[n]["overall"]["sharpe"] for n in ("model", "always_long") if n in models},
        "level": edges["level"],
        "block": edges["block"],
        "reps": edges["reps"],
    }
    report = {
        "context": context(data, costs),
        **rows,
        "folds": [
            {
                "fold": f.index,
                "start": f.start.isoformat(),
                "end": f.end.isoformat(),
                "train_rows": int(f.train.sum()),
                "test_rows": int(f.test.sum()),
                "series": _rows(data, np.flatnonzero(f.test))["series"],
                "untested": f.untested,
            }
            for f in plan.folds
        ],
        "predictors": predictors,
        "models": models,
        "criteria": criteria,
        "control": edges.get("control"),
        "control_at_chance": edges.get("control", {}).get("at_chance"),
    }
    return report, curves


def headline_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Rows of the model-vs-baseline table: one per predictor, :data:`HEADLINE` columns."""
    rows = []
    for name, entry in report["models"].items():
        o = entry["overall"]
        rows.append([name, *(o.get(k) for k in HEADLINE)])
    return rows
