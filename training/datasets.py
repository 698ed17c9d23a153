"""Training rows from the offline features, and the time layout every stage trains and tests on.

A sample is one bar of one series from the first full window on: its W×C window (a zero-copy view
over the per-bar channels, gathered per batch), its indicators, its market metadata and its label,
the forward log return over h bars. Rows come from the offline feature Parquet when it is current,
else from the same ``tradeloop.features`` code in memory, so both give identical rows.

:func:`plan` lays out time with the one purge rule of :mod:`tradeloop.splits` (a row trains only
when its label, the close of bar t+h counted in its own rows, has ended by the cut). Each CNN
market group gets its own time plan inside its own period, so groups whose data cover different
years (equities 2004–2013, crypto 2021–2023) each train and validate a CNN:

    group g: |---- CNN fit ----|- CNN val -|---------- XGBoost rows (out-of-sample CNN scores) ---|
                                           ^ cnn_cutoffs[g]

XGBoost's walk-forward folds are global by time: fold k tests rows in [start, end) and trains on
XGBoost rows of any series whose labels ended by ``start``. Fold boundaries are placed inside each
*period cluster* (series whose XGBoost periods overlap), ``folds`` per cluster, so a mix of
disjoint periods is tested inside each period rather than on whichever period is largest. A test
row whose timeframe group has no training row in its fold is not scored there (there is no model
to score it); a group never tested in any fold is an error naming it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tradeloop.bars.schema import TIMEFRAMES, series_id
from tradeloop.bars.store import BarStore
from tradeloop.bars.symbols import SymbolTable
from tradeloop.config import Settings
from tradeloop.errors import InvalidInput, UnknownSeries
from tradeloop.features import spec
from tradeloop.features.offline import feature_frame, read_features
from tradeloop.features.windows import gather_windows
from tradeloop.inference.inputs import TF_GROUPS, return_scale, xgb_feature_names, xgb_inputs
from tradeloop.labels import make_labels
from tradeloop.splits import ended_by, label_end_times

__all__ = [
    "MIN_STAGE_ROWS",
    "TF_GROUPS",
    "Dataset",
    "Fold",
    "Plan",
    "SeriesData",
    "load_dataset",
    "min_bars",
    "plan",
    "resolve_series",
    "xgb_feature_names",
]

MIN_STAGE_ROWS = 20  # fewest samples a group needs in each of CNN fit, CNN validation and XGBoost
TARGET_CLIP = 8.0  # z-scored targets beyond ±8 are clipped (flat stretches make rvol tiny)


def min_bars(window: int, horizon: int) -> int:
    """Fewest stored bars that yield one labelled window after the feature warm-up."""
    return spec.WARMUP + window + horizon


@dataclass(frozen=True, slots=True)
class SeriesData:
    """One series' feature rows (from warm-up on), aligned with its labels."""

    symbol: str
    timeframe: str
    asset_class: str
    ts: np.ndarray  # datetime64[ns] UTC, per feature row
    indicators: np.ndarray  # (n, F) float32
    channels: np.ndarray  # (n, C) float32
    metadata: np.ndarray  # (len(METADATA),) float32
    fwd_return: np.ndarray  # (n,) float64, NaN for the last h rows
    ret1: np.ndarray  # (n,) float64 log(close[r+1] / close[r]), NaN for the last row (backtest P&L)
    label_end: np.ndarray  # (n,) datetime64[ns] close of bar r+h (NaT for the last h rows)

    @property
    def series_id(self) -> str:
        return series_id(self.symbol, self.timeframe)


@dataclass(frozen=True)
class Dataset:
    """Samples pooled over series: ``sid``/``row`` locate each one in ``series``."""

    series: list[SeriesData]
    window: int
    horizon: int
    sid: np.ndarray  # int32 series index
    row: np.ndarray  # int32 feature row (the window's last bar)
    ts: np.ndarray  # datetime64[ns] bar open time
    label_end: np.ndarray  # datetime64[ns] close of bar t+h (counted in rows): the purge compares it
    y: np.ndarray  # float64 forward log return
    scale: np.ndarray  # float64 past-only volatility that turns returns into z-scores
    data_hash: str = field(default="")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def z(self) -> np.ndarray:
        """Volatility-scaled target, clipped: stationary across symbols and timeframes."""
        return np.clip(self.y / self.scale, -TARGET_CLIP, TARGET_CLIP)

    def group_of(self, kind: str) -> np.ndarray:
        """Per-sample group name: ``cnn`` groups by asset class, ``xgb`` by timeframe group."""
        names = [s.asset_class if kind == "cnn" else TF_GROUPS[s.timeframe] for s in self.series]
        return np.asarray(names, dtype=object)[self.sid]

    def windows(self, idx: np.ndarray, window: int | None = None) -> np.ndarray:
        """The (len(idx), W, C) float32 windows of samples ``idx`` (a copy of just those)."""
        channels = [s.channels for s in self.series]
        return gather_windows(channels, self.sid[idx], self.row[idx], window or self.window)

    def inputs(self, idx: np.ndarray) -> np.ndarray:
        """The ``features`` rows serving takes (indicators then metadata) of samples ``idx``."""
        sids, rows = self.sid[idx], self.row[idx]
        n_ind = len(spec.FEATURE_NAMES)
        out = np.empty((len(idx), n_ind + len(spec.METADATA)), dtype=np.float32)
        for s in np.unique(sids):
            mask = sids == s
            out[mask, :n_ind] = self.series[s].indicators[rows[mask]]
            out[mask, n_ind:] = self.series[s].metadata
        return out

    def xgb_matrix(self, idx: np.ndarray, cnn_score: np.ndarray) -> np.ndarray:
        """XGBoost inputs of samples ``idx`` in :func:`xgb_feature_names` order, float32, built by
        the same :func:`tradeloop.inference.xgb_inputs` serving uses."""
        features = self.inputs(idx)
        n_ind = len(spec.FEATURE_NAMES)
        return xgb_inputs(features[:, :n_ind], cnn_score, features[:, n_ind:])

    def indicator(self, name: str, idx: np.ndarray) -> np.ndarray:
        j = spec.FEATURE_NAMES.index(name)
        col = np.empty(len(idx), dtype=np.float64)
        for s in np.unique(self.sid[idx]):
            mask = self.sid[idx] == s
            col[mask] = self.series[s].indicators[self.row[idx][mask], j]
        return col


def resolve_series(
    settings: Settings, symbols: list[str] | None, timeframes: list[str] | None
) -> list[tuple[str, str]]:
    """Stored (symbol, timeframe) pairs selected by the filters; naming what is unknown."""
    stored = sorted({(s.symbol, s.timeframe) for s in BarStore(settings).series()})
    if not stored:
        raise UnknownSeries("*", "no bars stored; run `tradeloop data import` first")
    for tf in timeframes or []:
        if tf not in TIMEFRAMES:
            raise InvalidInput("timeframes", f"{tf!r} is not one of {', '.join(TIMEFRAMES)}")
        if tf not in {t for _, t in stored}:
            raise InvalidInput("timeframes", f"no stored series has timeframe {tf}")
    for sym in symbols or []:
        if sym not in {s for s, _ in stored}:
            raise InvalidInput("symbols", f"{sym!r} has no stored bars")
    chosen = [
        (s, t) for s, t in stored if (not symbols or s in symbols) and (not timeframes or t in timeframes)
    ]
    if not chosen:
        raise InvalidInput("series", "no stored series matches both --symbols and --timeframes")
    return chosen


def _series_data(
    settings: Settings, symbol: str, timeframe: str, bars: pd.DataFrame, horizon: int
) -> SeriesData:
    asset_class = SymbolTable(settings).get(symbol).asset_class
    table = read_features(settings, symbol, timeframe)
    expected = bars["ts"].iloc[spec.WARMUP :].reset_index(drop=True)
    if len(table) != len(expected) or not table["ts"].reset_index(drop=True).equals(expected):
        table = feature_frame(bars, symbol, timeframe, asset_class)  # offline file missing or stale
    labels = make_labels(bars, horizon, timeframe).iloc[spec.WARMUP :]
    one_bar = make_labels(bars, 1, timeframe).iloc[spec.WARMUP :]
    return SeriesData(
        symbol=symbol,
        timeframe=timeframe,
        asset_class=asset_class,
        ts=table["ts"].to_numpy(dtype="datetime64[ns]"),
        indicators=table[list(spec.FEATURE_NAMES)].to_numpy(dtype=np.float32),
        channels=np.ascontiguousarray(table[list(spec.CHANNELS)].to_numpy(dtype=np.float32)),
        metadata=np.asarray(spec.metadata_values(asset_class, timeframe), dtype=np.float32),
        fwd_return=labels["fwd_return"].to_numpy(dtype=np.float64),
        ret1=one_bar["fwd_return"].to_numpy(dtype=np.float64),
        label_end=label_end_times(table["ts"], horizon, TIMEFRAMES[timeframe].delta),
    )


def load_dataset(
    settings: Settings,
    pairs: list[tuple[str, str]],
    *,
    window: int,
    horizon: int,
    bars: dict[tuple[str, str], pd.DataFrame] | None = None,
) -> Dataset:
    """Pool the samples of ``pairs``; too short a series is an :class:`InvalidInput` naming it.

    ``bars`` may supply canonical bars in memory (the benchmark's resampled series); otherwise they
    are read from the bar store.
    """
    need = min_bars(window, horizon)
    store = BarStore(settings)
    series: list[SeriesData] = []
    for sym, tf in pairs:
        frame = bars[(sym, tf)] if bars and (sym, tf) in bars else store.read(sym, tf)
        if len(frame) < need:
            raise InvalidInput(
                "series",
                f"{sym}:{tf} has {len(frame)} bars; one training window needs at least {need} "
                f"({spec.WARMUP} warm-up + {window} window + {horizon} label)",
            )
        series.append(_series_data(settings, sym, tf, frame, horizon))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("sid", "row", "ts", "label_end", "y", "scale")}
    digest = hashlib.sha256()
    for i, s in enumerate(series):
        n = len(s.ts)
        rows = np.arange(window - 1, n - horizon, dtype=np.int32)
        rows = rows[np.isfinite(s.fwd_return[rows])]
        parts["sid"].append(np.full(len(rows), i, dtype=np.int32))
        parts["row"].append(rows)
        parts["ts"].append(s.ts[rows])
        parts["label_end"].append(s.label_end[rows])
        parts["y"].append(s.fwd_return[rows])
        parts["scale"].append(return_scale(s.indicators[rows], horizon))
        for chunk in (s.series_id.encode(), s.ts.view(np.int64), s.indicators, s.channels, s.fwd_return):
            digest.update(chunk if isinstance(chunk, bytes) else np.ascontiguousarray(chunk).tobytes())
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return Dataset(series=series, window=window, horizon=horizon, data_hash=digest.hexdigest(), **arrays)


@dataclass(frozen=True)
class Fold:
    """One walk-forward window: test rows in [start, end), train rows whose labels ended by start."""

    index: int
    start: pd.Timestamp
    end: pd.Timestamp
    train: np.ndarray
    test: np.ndarray
    untested: dict[str, int] = field(default_factory=dict)  # xgb group → rows left unscored here


@dataclass(frozen=True)
class Plan:
    """Boolean sample masks of every stage (see the module docstring for the picture)."""

    cnn_cutoffs: dict[str, pd.Timestamp]
    cnn_fit: np.ndarray
    cnn_val: np.ndarray
    xgb: np.ndarray
    folds: tuple[Fold, ...]

    @property
    def cnn_train(self) -> np.ndarray:
        return self.cnn_fit | self.cnn_val

    @property
    def test(self) -> np.ndarray:
        """Every sample some fold scores."""
        out = np.zeros_like(self.xgb)
        for fold in self.folds:
            out |= fold.test
        return out


def _ns(stamp: pd.Timestamp) -> np.datetime64:
    return np.datetime64(stamp.tz_convert("UTC").tz_localize(None).as_unit("ns"))


def _at(values: np.ndarray, q: float) -> pd.Timestamp:
    return pd.Timestamp(int(np.quantile(values.view(np.int64), q, method="higher")), tz="UTC")


def _span(ts: np.ndarray) -> str:
    return f"{pd.Timestamp(ts.min()):%Y-%m-%d}–{pd.Timestamp(ts.max()):%Y-%m-%d}" if len(ts) else "no rows"


def _cnn_plan(
    data: Dataset, in_group: np.ndarray, group: str, cnn_fraction: float, val_fraction: float
) -> tuple[pd.Timestamp, np.ndarray, np.ndarray, np.ndarray]:
    """(cutoff, fit, val, xgb) masks of one CNN market group, cut inside the group's own period."""
    n = int(in_group.sum())
    smallest = min(cnn_fraction * (1 - val_fraction), cnn_fraction * val_fraction, 1 - cnn_fraction)
    need = int(np.ceil(MIN_STAGE_ROWS / smallest)) + 2 * data.horizon

    def short(what: str, have: int) -> InvalidInput:
        return InvalidInput(
            "split",
            f"cnn group {group!r} has {n:,} samples ({_span(data.ts[in_group])}) and {have:,} {what} rows; "
            f"it needs at least {MIN_STAGE_ROWS} rows in each of CNN fit, CNN validation and XGBoost, "
            f"about {need:,} samples at cnn_fraction={cnn_fraction}, cnn_val_fraction={val_fraction}",
        )

    idx = np.flatnonzero(in_group)
    ts, ends = data.ts[idx], data.label_end[idx]
    cutoff = _at(ts, cnn_fraction)
    train = ended_by(ends, cutoff)
    later = ts >= _ns(cutoff)
    if train.sum() < MIN_STAGE_ROWS or later.sum() < MIN_STAGE_ROWS:
        raise short("CNN" if train.sum() < MIN_STAGE_ROWS else "XGBoost", int(min(train.sum(), later.sum())))
    val_cut = _at(ts[train], 1.0 - val_fraction)
    fit = train & ended_by(ends, val_cut)
    val = train & (ts >= _ns(val_cut))
    for what, mask in (("CNN fit", fit), ("CNN validation", val)):
        if mask.sum() < MIN_STAGE_ROWS:
            raise short(what, int(mask.sum()))
    out = [np.zeros(len(data), dtype=bool) for _ in range(3)]
    for full, part in zip(out, (fit, val, later), strict=True):
        full[idx[part]] = True
    return cutoff, out[0], out[1], out[2]


def _clusters(data: Dataset, xgb: np.ndarray) -> list[np.ndarray]:
    """XGBoost rows grouped into period clusters: series whose XGBoost periods overlap."""
    spans = []
    for s in np.unique(data.sid[xgb]):
        ts = data.ts[xgb & (data.sid == s)]
        spans.append((ts.min(), ts.max(), s))
    spans.sort()
    clusters: list[list[int]] = []
    end = None
    for first, last, s in spans:
        if end is None or first > end:
            clusters.append([])
            end = last
        clusters[-1].append(int(s))
        end = max(end, last)
    return [xgb & np.isin(data.sid, members) for members in clusters]


def plan(data: Dataset, *, cnn_fraction: float, val_fraction: float, folds: int) -> Plan:
    """Cut time per CNN group and into global walk-forward folds; :class:`InvalidInput` names any
    group that truly lacks data (its rows and the rows it needs)."""
    if folds < 1:
        raise InvalidInput("folds", f"need at least one walk-forward fold, got {folds}")
    cnn_groups, xgb_groups = data.group_of("cnn"), data.group_of("xgb")
    cutoffs: dict[str, pd.Timestamp] = {}
    cnn_fit, cnn_val, xgb = (np.zeros(len(data), dtype=bool) for _ in range(3))
    for group in sorted(set(cnn_groups)):
        cutoff, fit, val, later = _cnn_plan(data, cnn_groups == group, group, cnn_fraction, val_fraction)
        cutoffs[group] = cutoff
        cnn_fit |= fit
        cnn_val |= val
        xgb |= later
    windows: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for cluster in _clusters(data, xgb):
        ts = data.ts[cluster]
        bounds = [_at(ts, j / (folds + 1)) for j in range(1, folds + 1)]
        bar = min(TIMEFRAMES[data.series[s].timeframe].delta for s in np.unique(data.sid[cluster]))
        end = pd.Timestamp(int(ts.view(np.int64).max()), tz="UTC") + bar  # close of the last bar
        windows += [(b, bounds[k + 1] if k + 1 < len(bounds) else end) for k, b in enumerate(bounds)]
    out = []
    for start, stop in sorted(windows):
        train = xgb & ended_by(data.label_end, start)
        test = xgb & (data.ts >= _ns(start)) & (data.ts < _ns(stop))
        untested: dict[str, int] = {}
        for group in sorted(set(xgb_groups[test])):
            if not (train & (xgb_groups == group)).any():
                untested[group] = int((test & (xgb_groups == group)).sum())
                test &= xgb_groups != group
        if not test.any():
            continue
        out.append(Fold(len(out) + 1, start, stop, train, test, untested))
    if not out:
        raise InvalidInput("split", "no walk-forward fold has both training and test rows; add data")
    tested = set(xgb_groups[np.logical_or.reduce([f.test for f in out])])
    for group in sorted(set(xgb_groups[xgb]) - tested):
        rows = xgb & (xgb_groups == group)
        raise InvalidInput(
            "split",
            f"timeframe group {group!r} has {int(rows.sum()):,} XGBoost rows ({_span(data.ts[rows])}) "
            f"but none in a walk-forward fold after earlier rows of its group; it needs data before "
            f"and after a fold boundary (at least {MIN_STAGE_ROWS} rows each)",
        )
    return Plan(cutoffs, cnn_fit, cnn_val, xgb, tuple(out))
