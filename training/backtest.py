"""Long/short backtest with costs, annualised explicitly per timeframe.

Position at bar t is ``sign(prediction)`` (−1, 0, +1), held over the label's h bars; with h > 1
the overlapping positions each carry 1/h of the capital. Every change of position pays
``cost_bps`` per unit changed. Series of one timeframe are equal-weighted per timestamp into one
portfolio, whose Sharpe is annualised with that timeframe's bars per year for its market (24/7
crypto, 252 equity sessions of 6.5 h, 260 FX/commodity days of 24 h). Mixing timeframes in one
Sharpe would be meaningless, so the headline averages the per-timeframe figures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradeloop.bars.schema import TIMEFRAMES

__all__ = ["BacktestResult", "backtest", "periods_per_year"]

_DAYS = {"crypto": 365.0, "equity": 252.0, "fx": 260.0, "commodity": 260.0}
_SESSION_MINUTES = {"crypto": 1440.0, "equity": 390.0, "fx": 1440.0, "commodity": 1440.0}


def periods_per_year(timeframe: str, asset_class: str) -> float:
    """Bars per year of ``timeframe`` in a market that trades like ``asset_class``."""
    minutes = TIMEFRAMES[timeframe].minutes
    days = _DAYS.get(asset_class, 365.0)
    if minutes >= 7 * 1440:
        return days / 5.0 if asset_class != "crypto" else 365.0 / 7.0
    if minutes >= 1440:
        return days
    return days * _SESSION_MINUTES.get(asset_class, 1440.0) / minutes


@dataclass(frozen=True)
class BacktestResult:
    """Headline numbers plus the per-timeframe breakdown and equity curves."""

    sharpe: float | None
    max_drawdown: float
    hit_rate: float | None
    turnover: float
    total_return: float
    per_timeframe: dict[str, dict[str, float | None]]
    equity: dict[str, pd.Series]  # cumulative log P&L per timeframe, indexed by ts

    def to_dict(self) -> dict[str, object]:
        return {
            "sharpe": self.sharpe,
            "max_drawdown": self.max_drawdown,
            "hit_rate": self.hit_rate,
            "turnover": self.turnover,
            "total_return": self.total_return,
            "per_timeframe": self.per_timeframe,
        }


def _max_drawdown(cum_log: np.ndarray) -> float:
    """Largest peak-to-trough loss of the equity curve, as a fraction of the peak."""
    if len(cum_log) == 0:
        return 0.0
    peak = np.maximum.accumulate(np.concatenate([[0.0], cum_log]))[1:]
    return float(1.0 - np.exp(-(peak - cum_log).max()))


def backtest(
    pred: np.ndarray,
    y: np.ndarray,
    ts: np.ndarray,
    sid: np.ndarray,
    series: list[tuple[str, str]],
    *,
    horizon: int,
    cost_bps: float,
) -> BacktestResult:
    """Backtest ``sign(pred)`` against realised log returns ``y``.

    ``sid`` indexes ``series`` (timeframe, asset_class) per row; rows of one series must be in
    time order. Returns None for Sharpe/hit rate when no position was ever taken.
    """
    cost = cost_bps * 1e-4
    frame = pd.DataFrame({"pred": pred, "y": y, "ts": ts, "sid": sid})
    pnl_parts: dict[str, list[pd.Series]] = {}
    hits = taken = 0
    changes, bars = 0.0, 0
    for s, rows in frame.groupby("sid", sort=True):
        pos = np.sign(rows["pred"].to_numpy())
        turn = np.abs(np.diff(pos, prepend=0.0)) / horizon
        pnl = pos * rows["y"].to_numpy() / horizon - cost * turn
        hits += int(((pos * rows["y"].to_numpy()) > 0).sum())
        taken += int((pos != 0).sum())
        changes += float(turn.sum())
        bars += len(pos)
        timeframe = series[int(s)][0]
        pnl_parts.setdefault(timeframe, []).append(pd.Series(pnl, index=pd.DatetimeIndex(rows["ts"])))
    per_tf: dict[str, dict[str, float | None]] = {}
    equity: dict[str, pd.Series] = {}
    for timeframe, parts in pnl_parts.items():
        classes = Counter(series[i][1] for i in range(len(series)) if series[i][0] == timeframe)
        ppy = periods_per_year(timeframe, classes.most_common(1)[0][0])
        portfolio = pd.concat(parts).groupby(level=0).mean().sort_index()
        sd = float(portfolio.std(ddof=1)) if len(portfolio) > 1 else 0.0
        sharpe = float(portfolio.mean() / sd * np.sqrt(ppy)) if sd > 0 else None
        curve = portfolio.cumsum()
        equity[timeframe] = curve
        per_tf[timeframe] = {
            "sharpe": sharpe,
            "periods_per_year": ppy,
            "max_drawdown": _max_drawdown(curve.to_numpy()),
            "total_return": float(np.expm1(curve.iloc[-1])) if len(curve) else 0.0,
            "bars": len(portfolio),
        }
    sharpes = [v["sharpe"] for v in per_tf.values() if v["sharpe"] is not None]
    return BacktestResult(
        sharpe=float(np.mean(sharpes)) if sharpes else None,
        max_drawdown=max((float(v["max_drawdown"]) for v in per_tf.values()), default=0.0),
        hit_rate=hits / taken if taken else None,
        turnover=changes / bars if bars else 0.0,
        total_return=float(np.mean([v["total_return"] for v in per_tf.values()])) if per_tf else 0.0,
        per_timeframe=per_tf,
        equity=equity,
    )
