"""Long/short backtest with overlapping h-bar positions, per-asset-class costs and per-market Sharpe.

Why this accounting: a label over h bars overlaps the next h−1 labels, so using the label as one
bar's P&L counts every 1-bar return h times and inflates Sharpe by about √h. Here every bar earns
its own 1-bar return exactly once, on the position actually held over it.

Accounting, per series (its scored rows ``r`` are consecutive bars):

* The signal opened at a scored row r is ``s[r] = sign(pred)`` (−1, 0, +1). It is held for h bars
  with weight 1/h, so the portfolio position over bar r (earning ``ret1[r] = log(close[r+1] /
  close[r])``) is ``P[r] = (1/h)·Σ_{j<h} s[r−j]`` on a dense row grid from the series' first
  scored row to its last scored row + h − 1. Unscored rows inside the grid contribute s = 0;
  positions opened before the first scored row do not exist (the first h−1 bars ramp up).
* P&L of bar r (log return on capital): ``P[r]·ret1[r] − c·|P[r] − P[r−1]|`` with P = 0 before the
  grid, and the unwind ``c·|P[last]|`` charged on the grid's last bar, so every unit traded in or
  out pays once. ``c = cost_bps[asset_class]·1e-4``: costs differ by market (see
  :data:`DEFAULT_COSTS_BPS`). Turnover is the real change of the held position, not of the signal.
* A ``ret1`` a held position needs must be finite; a NaN there is an error naming the series.
  Bars where nothing is held (P = 0 and no open signal) earn 0 whatever ``ret1`` says.
* Hit rate: over scored rows with s ≠ 0, the share with ``s·ret_h > 0`` where ``ret_h =
  Σ_{j<h} ret1[r+j]`` is the h-bar label the signal was a bet on. None when no position was taken.
* Turnover: mean |ΔP| per bar over every bar of every grid, the final unwind included.

Markets: series are grouped by (timeframe, asset_class), because a Sharpe only has a meaning at one
bar length and one trading calendar. Within a market the per-bar P&L is equal-weighted per
timestamp (mean over the series holding a grid bar at that ts) into one portfolio whose Sharpe is
``mean/std(ddof=1)·√periods_per_year``. The headline Sharpe is the mean of the markets' defined
Sharpes, max drawdown the worst market's, total return the mean of the markets'.

A market with no position at all has Sharpe 0.0: flat capital earns nothing at no risk, which is
well defined and the same for every predictor, so a model that abstains in a fold is not dropped
from the average. A market with positions but fewer than 2 bars or constant P&L has Sharpe None
(undefined). With no scored rows at all the headline Sharpe is 0.0 for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tradeloop.bars.schema import Timeframe
from tradeloop.errors import InvalidInput

__all__ = ["DEFAULT_COSTS_BPS", "BacktestResult", "SeriesReturns", "backtest", "periods_per_year"]

# Cost of one unit of position traded (in or out), in basis points of notional, per asset class.
# These are what a practitioner would accept for liquid taker trading, fee plus half the spread:
# - crypto 10: spot taker fees run ~7.5-10 bps on the large venues, plus ~1-2 bps of spread on the
#   majors; 10 is the round, slightly conservative figure.
# - equity 5: liquid large caps cost ~1-3 bps of half-spread plus commissions/fees and some impact.
# - fx 1: major pairs trade at a fraction of a pip (~0.5-1 bp) at institutional size.
# - commodity 3: front-month futures on liquid contracts, about one tick of spread plus fees.
DEFAULT_COSTS_BPS: dict[str, float] = {"crypto": 10.0, "equity": 5.0, "fx": 1.0, "commodity": 3.0}

_DAYS = {"crypto": 365.0, "equity": 252.0, "fx": 260.0, "commodity": 260.0}
_SESSION_MINUTES = {"crypto": 1440.0, "equity": 390.0, "fx": 1440.0, "commodity": 1440.0}


def periods_per_year(timeframe: str, asset_class: str) -> float:
    """Bars per year of ``timeframe`` in a market that trades like ``asset_class``.

    Crypto trades 24/7 (365 days), equities 252 sessions of 6.5 h, FX and commodities 260 days of
    24 h; an unknown timeframe is an :class:`InvalidInput`.
    """
    minutes = Timeframe.parse(timeframe).minutes
    days = _DAYS.get(asset_class, 365.0)
    if minutes >= 7 * 1440:
        return days / 5.0 if asset_class != "crypto" else 365.0 / 7.0
    if minutes >= 1440:
        return days
    return days * _SESSION_MINUTES.get(asset_class, 1440.0) / minutes


@dataclass(frozen=True, slots=True)
class SeriesReturns:
    """One series as the backtest needs it."""

    timeframe: str
    asset_class: str
    ts: np.ndarray  # datetime64[ns] bar open time of every feature row of the series
    ret1: np.ndarray  # float64 log(close[r+1] / close[r]) per feature row r; NaN for the last row
    name: str = ""  # optional id (e.g. "BTCUSDT:1h") so errors can name the series


@dataclass(frozen=True)
class BacktestResult:
    """Headline numbers plus the per-market breakdown (``"TF/asset_class"``) and equity curves."""

    sharpe: float | None
    max_drawdown: float
    hit_rate: float | None
    turnover: float
    total_return: float
    per_market: dict[str, dict[str, float | int | None]]
    equity: dict[str, pd.Series] = field(default_factory=dict)  # cumulative log P&L per market, by ts

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (equity curves left out: they are written separately)."""
        return {
            "sharpe": self.sharpe,
            "max_drawdown": self.max_drawdown,
            "hit_rate": self.hit_rate,
            "turnover": self.turnover,
            "total_return": self.total_return,
            "per_market": self.per_market,
        }


@dataclass(slots=True)
class _SeriesOutcome:
    """What one series contributes: its grid's P&L by ts and its counts for the headline."""

    ts: np.ndarray
    pnl: np.ndarray
    traded: float  # Σ|ΔP| including the final unwind
    bars: int
    positions: int  # scored rows with a nonzero signal
    hits: int


def _max_drawdown(cum_log: np.ndarray) -> float:
    """Largest peak-to-trough loss of the equity curve as a fraction of the peak (curve starts at 0)."""
    if len(cum_log) == 0:
        return 0.0
    peak = np.maximum.accumulate(np.concatenate([[0.0], cum_log]))[1:]
    return float(1.0 - np.exp(-(peak - cum_log).max()))


def _label(k: int, s: SeriesReturns) -> str:
    """How errors name series ``k``: its id when known, else its index and market."""
    name = getattr(s, "name", "") or getattr(s, "series_id", "")
    return f"series {k} {name} ({s.timeframe}/{s.asset_class})".replace("  ", " ")


def _run_series(
    k: int, s: SeriesReturns, rows: np.ndarray, signs: np.ndarray, h: int, cost: float
) -> _SeriesOutcome:
    """Overlapping-position P&L of one series on the dense grid of its scored rows (vectorised)."""
    ret1 = np.asarray(s.ret1, dtype=np.float64)
    ts = np.asarray(s.ts)
    if ret1.ndim != 1 or len(ts) != len(ret1):
        raise InvalidInput("series", f"{_label(k, s)}: ts and ret1 must be 1-D of equal length")
    if rows.min() < 0 or rows.max() >= len(ret1):
        raise InvalidInput("row", f"{_label(k, s)}: rows must lie in [0, {len(ret1)})")
    first, last = int(rows.min()), int(rows.max())
    length = last - first + h
    if first + length > len(ret1):
        raise InvalidInput(
            "ret1",
            f"{_label(k, s)}: row {last} is held {h} bars but the series has only {len(ret1)} rows",
        )
    sig = np.zeros(length)
    sig[rows - first] = signs
    ones = np.ones(h)
    pos = np.convolve(sig, ones)[:length] / h
    # Bars a signal is open over: only these need a finite 1-bar return (P ≠ 0 lies inside them).
    open_ = np.convolve(np.abs(sig), ones)[:length] > 0
    r = ret1[first : first + length]
    bad = open_ & ~np.isfinite(r)
    if bad.any():
        at = first + int(np.flatnonzero(bad)[0])
        raise InvalidInput("ret1", f"{_label(k, s)}: 1-bar return of row {at} is not finite but is held")
    r = np.where(open_, r, 0.0)
    change = np.abs(np.diff(pos, prepend=0.0))
    change[-1] += abs(pos[-1])  # the final unwind, charged on the grid's last bar
    pnl = pos * r - cost * change
    # h-bar label of every grid row that starts a full window: ret_h[i] = Σ_{j<h} r[i+j]
    ret_h = np.convolve(r, ones, mode="valid")
    taken = signs != 0
    hits = int((signs[taken] * ret_h[rows[taken] - first] > 0).sum())
    return _SeriesOutcome(
        ts=ts[first : first + length],
        pnl=pnl,
        traded=float(change.sum()),
        bars=length,
        positions=int(taken.sum()),
        hits=hits,
    )


def _sharpe(pnl: np.ndarray, positions: int, ppy: float) -> float | None:
    """Annualised Sharpe: 0.0 when flat throughout, None when undefined (under 2 bars, constant)."""
    if positions == 0:
        return 0.0
    if len(pnl) < 2 or np.ptp(pnl) == 0:
        return None
    return float(pnl.mean() / pnl.std(ddof=1) * np.sqrt(ppy))


def _market(key: str, parts: list[_SeriesOutcome]) -> tuple[dict[str, float | int | None], pd.Series]:
    """One market's equal-weighted portfolio (mean P&L per timestamp): its numbers and equity curve."""
    timeframe, asset_class = key.split("/", 1)
    ppy = periods_per_year(timeframe, asset_class)
    stamps = pd.DatetimeIndex(np.concatenate([p.ts for p in parts]))
    portfolio = pd.Series(np.concatenate([p.pnl for p in parts]), index=stamps).groupby(level=0).mean()
    values = portfolio.to_numpy()
    positions = sum(p.positions for p in parts)
    curve = portfolio.cumsum()
    summary: dict[str, float | int | None] = {
        "sharpe": _sharpe(values, positions, ppy),
        "periods_per_year": ppy,
        "max_drawdown": _max_drawdown(curve.to_numpy()),
        "total_return": float(np.expm1(values.sum())),
        "bars": len(values),
        "positions": positions,
    }
    return summary, curve


def _validate(
    pred: np.ndarray, sid: np.ndarray, row: np.ndarray, series: list[SeriesReturns], horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays as float/int, with every mistake a caller can make reported as :class:`InvalidInput`."""
    pred = np.asarray(pred, dtype=np.float64)
    sid, row = np.asarray(sid), np.asarray(row)
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise InvalidInput("horizon", f"must be an integer ≥ 1, got {horizon!r}")
    if pred.ndim != 1 or sid.shape != pred.shape or row.shape != pred.shape:
        shapes = f"{pred.shape}, {sid.shape}, {row.shape}"
        raise InvalidInput("pred", f"pred, sid and row must be 1-D of equal length, got {shapes}")
    for name, arr in (("sid", sid), ("row", row)):
        if len(arr) and not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInput(name, f"must be integers, got {arr.dtype}")
    if not np.isfinite(pred).all():
        raise InvalidInput("pred", f"{int((~np.isfinite(pred)).sum())} predictions are not finite")
    if len(sid) and (sid.min() < 0 or sid.max() >= len(series)):
        raise InvalidInput("sid", f"must index the {len(series)} series")
    return pred, sid.astype(np.int64), row.astype(np.int64)


def backtest(
    pred: np.ndarray,
    sid: np.ndarray,
    row: np.ndarray,
    series: list[SeriesReturns],
    *,
    horizon: int,
    cost_bps: Mapping[str, float],
) -> BacktestResult:
    """Backtest ``sign(pred)`` held h bars with weight 1/h (see the module docstring for the rules).

    ``pred[i]`` is a return prediction for feature row ``row[i]`` of ``series[sid[i]]``; a row may
    be scored at most once. ``cost_bps`` maps every asset class in ``series`` to its cost per unit
    traded (``DEFAULT_COSTS_BPS`` holds sensible defaults).
    """
    pred, sid, row = _validate(pred, sid, row, series, horizon)
    for s in series:
        if s.asset_class not in cost_bps:
            raise InvalidInput("cost_bps", f"no cost for asset class {s.asset_class!r}")
        try:
            c = float(cost_bps[s.asset_class])
        except (TypeError, ValueError):
            c = float("nan")
        if not np.isfinite(c) or c < 0:
            raise InvalidInput(
                "cost_bps", f"{s.asset_class}: cost must be finite and ≥ 0, got {cost_bps[s.asset_class]!r}"
            )
    signs = np.sign(pred)
    order = np.lexsort((row, sid))
    sid_sorted, row_sorted = sid[order], row[order]
    dup = (np.diff(sid_sorted) == 0) & (np.diff(row_sorted) == 0)
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise InvalidInput("row", f"row {row_sorted[i]} of series {sid_sorted[i]} is scored twice")
    cuts = np.flatnonzero(np.diff(sid_sorted)) + 1
    markets: dict[str, list[_SeriesOutcome]] = {}
    for chunk in np.split(order, cuts) if len(order) else []:
        k = int(sid[chunk[0]])
        s = series[k]
        cost = float(cost_bps[s.asset_class]) * 1e-4
        outcome = _run_series(k, s, row[chunk], signs[chunk], int(horizon), cost)
        markets.setdefault(f"{s.timeframe}/{s.asset_class}", []).append(outcome)

    per_market: dict[str, dict[str, float | int | None]] = {}
    equity: dict[str, pd.Series] = {}
    for key in sorted(markets):
        per_market[key], equity[key] = _market(key, markets[key])
    outcomes = [p for parts in markets.values() for p in parts]
    taken = sum(p.positions for p in outcomes)
    bars = sum(p.bars for p in outcomes)
    sharpes = [v["sharpe"] for v in per_market.values() if v["sharpe"] is not None]
    drawdowns = [float(v["max_drawdown"] or 0.0) for v in per_market.values()]
    returns = [float(v["total_return"] or 0.0) for v in per_market.values()]
    if not per_market:
        headline: float | None = 0.0  # nothing scored: flat capital, as for a market with no position
    else:
        headline = float(np.mean(sharpes)) if sharpes else None
    return BacktestResult(
        sharpe=headline,
        max_drawdown=max(drawdowns, default=0.0),
        hit_rate=sum(p.hits for p in outcomes) / taken if taken else None,
        turnover=sum(p.traded for p in outcomes) / bars if bars else 0.0,
        total_return=float(np.mean(returns)) if returns else 0.0,
        per_market=per_market,
        equity=equity,
    )
