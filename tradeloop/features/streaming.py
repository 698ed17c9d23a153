"""Per-bar feature updates from carried state (the live ingest and serving path).

:class:`StreamingFeatures` holds exactly what the next bar needs (a few short ring buffers and
exponential averages) and updates in pure Python floats, so one bar costs microseconds. Its state
round-trips through :meth:`to_state` / :meth:`from_state` as plain JSON (floats are written with
``repr`` precision), so a restarted ingest continues bit-for-bit where it stopped.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from tradeloop.features import spec

__all__ = ["StreamingFeatures"]

_NAN = float("nan")
_A_CH = spec.ema_alpha(spec.CHANNEL_SPAN)
_A_FAST, _A_SLOW = spec.ema_alpha(spec.MACD_FAST), spec.ema_alpha(spec.MACD_SLOW)
_A_SIG = spec.ema_alpha(spec.MACD_SIGNAL)
_A_EMA = tuple(spec.ema_alpha(p) for p in spec.EMA_PERIODS)
_A_RSI, _A_ATR = spec.wilder_alpha(spec.RSI_PERIOD), spec.wilder_alpha(spec.ATR_PERIOD)
_MAX_RET = max(spec.RET_HORIZONS)
_CLIP = spec.CHANNEL_CLIP


def _ema(prev: float | None, x: float, alpha: float) -> float:
    """Same recurrence as the batch lfilter: alpha·x + (1-alpha)·prev, seeded with x."""
    keep = 1.0 - alpha
    return alpha * x + keep * (x if prev is None else prev)


def _mean_std(values: deque[float]) -> tuple[float, float]:
    n = len(values)
    m = sum(values) / n
    return m, math.sqrt(sum((x - m) * (x - m) for x in values) / n)


def _clip(x: float) -> float:
    return _CLIP if x > _CLIP else (-_CLIP if x < -_CLIP else x)


class StreamingFeatures:
    """Incremental features of one series; ``update`` returns (indicators, channels) for a bar."""

    def __init__(self, window: int = spec.WINDOW) -> None:
        self.window = window
        self.count = 0
        self.prev_close: float | None = None
        self.closes: deque[float] = deque(maxlen=_MAX_RET + 1)
        self.sma: dict[int, deque[float]] = {p: deque(maxlen=p) for p in spec.SMA_PERIODS}
        self.bb: deque[float] = deque(maxlen=spec.BB_PERIOD)
        self.rets: deque[float] = deque(maxlen=spec.RVOL_PERIOD)
        self.vols: deque[float] = deque(maxlen=spec.VOLZ_PERIOD)
        self.ema: dict[str, float | None] = dict.fromkeys(
            ("fast", "slow", "signal", "gain", "loss", "atr", "sig2", "lv_mean", *map(str, spec.EMA_PERIODS))
        )
        self.lv_var = 0.0
        self.channels: deque[tuple[float, ...]] = deque(maxlen=window)

    def update(
        self, o: float, h: float, low: float, c: float, v: float
    ) -> tuple[list[float], tuple[float, ...]]:
        """Advance by one bar; returns indicator values (spec order) and this bar's channel row."""
        prev = o if self.prev_close is None else self.prev_close
        e = self.ema
        r1 = math.log(c / prev)
        closes = self.closes
        closes.append(c)
        feats: list[float] = []
        n_closes = len(closes)
        for k in spec.RET_HORIZONS:
            feats.append(math.log(c / closes[-k - 1]) if n_closes > k else _NAN)
        for p, buf in self.sma.items():
            buf.append(c)
            feats.append(c / (sum(buf) / p) - 1.0 if len(buf) == p else _NAN)
        for p, alpha in zip(spec.EMA_PERIODS, _A_EMA, strict=True):
            e[str(p)] = _ema(e[str(p)], c, alpha)
            feats.append(c / e[str(p)] - 1.0)

        self.bb.append(c)
        if len(self.bb) == spec.BB_PERIOD:
            mid, sd = _mean_std(self.bb)
            flat = sd <= spec.FLAT_STD * abs(mid)
            feats.append(0.5 if flat else (c - (mid - spec.BB_K * sd)) / (2 * spec.BB_K * sd))
            feats.append(2 * spec.BB_K * sd / mid)
        else:
            feats += [_NAN, _NAN]

        delta = c - prev
        e["gain"] = gain = _ema(e["gain"], delta if delta > 0.0 else 0.0, _A_RSI)
        e["loss"] = loss = _ema(e["loss"], -delta if delta < 0.0 else 0.0, _A_RSI)
        total = gain + loss
        feats.append(gain / total if total > 0 else 0.5)

        e["fast"] = _ema(e["fast"], c, _A_FAST)
        e["slow"] = _ema(e["slow"], c, _A_SLOW)
        macd = e["fast"] - e["slow"]
        e["signal"] = signal = _ema(e["signal"], macd, _A_SIG)
        feats += [macd / c, signal / c, macd / c - signal / c]

        tr = max(h - low, max(abs(h - prev), abs(low - prev)))
        e["atr"] = _ema(e["atr"], tr, _A_ATR)
        feats.append(e["atr"] / c)

        self.rets.append(r1)
        feats.append(_mean_std(self.rets)[1] if len(self.rets) == spec.RVOL_PERIOD else _NAN)
        self.vols.append(v)
        if len(self.vols) == spec.VOLZ_PERIOD:
            vmean, vsd = _mean_std(self.vols)
            feats.append((v - vmean) / vsd if vsd > spec.FLAT_STD * abs(vmean) else 0.0)
        else:
            feats.append(_NAN)
        feats += [(h - low) / c, math.log(c / o)]

        channel = self._channels(o, h, low, c, v, prev, r1)
        self.prev_close = c
        self.count += 1
        return feats, channel

    def _channels(
        self, o: float, h: float, low: float, c: float, v: float, prev: float, r1: float
    ) -> tuple[float, ...]:
        e = self.ema
        e["sig2"] = _ema(e["sig2"], r1 * r1, _A_CH)
        sigma = math.sqrt(e["sig2"] + spec.VAR_FLOOR)
        lv = math.log1p(v)
        lv_mean_prev = e["lv_mean"]
        e["lv_mean"] = _ema(lv_mean_prev, lv, _A_CH)
        if lv_mean_prev is not None:
            d = lv - lv_mean_prev
            keep = 1.0 - _A_CH
            self.lv_var = keep * _A_CH * (d * d) + keep * self.lv_var
        lv_std = math.sqrt(self.lv_var + spec.VAR_FLOOR)
        row = (
            _clip(r1 / sigma),
            _clip(math.log(o / prev) / sigma),
            _clip(math.log(h / max(o, c)) / sigma),
            _clip(math.log(min(o, c) / low) / sigma),
            _clip(math.log(c / o) / sigma),
            _clip(math.log(h / low) / sigma),
            _clip((lv - e["lv_mean"]) / lv_std),
        )
        self.channels.append(row)
        return row

    def window_array(self) -> np.ndarray | None:
        """The last W channel rows as a (W, C) float32 array, or None before W bars were seen."""
        if len(self.channels) < self.window:
            return None
        return np.asarray(self.channels, dtype=np.float32)

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`from_state` restores an identical object."""
        return {
            "spec_version": spec.SPEC_VERSION,
            "window": self.window,
            "count": self.count,
            "prev_close": self.prev_close,
            "closes": list(self.closes),
            "sma": {str(p): list(b) for p, b in self.sma.items()},
            "bb": list(self.bb),
            "rets": list(self.rets),
            "vols": list(self.vols),
            "ema": dict(self.ema),
            "lv_var": self.lv_var,
            "channels": [list(r) for r in self.channels],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamingFeatures:
        if state.get("spec_version") != spec.SPEC_VERSION:
            raise ValueError(
                f"streaming state is for feature spec {state.get('spec_version')}, not {spec.SPEC_VERSION}"
            )
        obj = cls(window=int(state["window"]))
        obj.count = int(state["count"])
        obj.prev_close = state["prev_close"]
        obj.closes.extend(state["closes"])
        for p, values in state["sma"].items():
            obj.sma[int(p)].extend(values)
        obj.bb.extend(state["bb"])
        obj.rets.extend(state["rets"])
        obj.vols.extend(state["vols"])
        obj.ema.update(state["ema"])
        obj.lv_var = float(state["lv_var"])
        obj.channels.extend(tuple(r) for r in state["channels"])
        return obj
