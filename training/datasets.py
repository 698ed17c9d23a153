"""Training rows from the offline features, and the time layout every stage trains and tests on.

A sample is one bar of one series from the first full window on: its W×C window (a zero-copy view
over the per-bar channels, gathered per batch), its indicators, its market metadata and its label,
the forward log return over h bars. Rows come from the offline feature Parquet when it is current,
else from the same ``tradeloop.features`` code in memory, so both give identical rows.

:func:`plan` cuts time for all series together (``tradeloop.splits`` semantics, purge of h bars
measured with each row's real label bar, so a gap in the data cannot hide a leak):

    |---- CNN fit ----|- CNN val -|-- XGB train --|-- fold 1 --|-- fold 2 --|-- fold 3 --|
                                  ^ cnn_cutoff: only rows from here on ever get CNN scores

The CNN never sees a row at or after ``cnn_cutoff``; XGBoost only sees rows from there on, so its
CNN input is always an out-of-sample score. Each fold's XGBoost trains on XGB rows whose labels end
before the fold starts (expanding window) and is tested on the fold.
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
from tradeloop.labels import make_labels
from tradeloop.splits import time_split

__all__ = [
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

TF_GROUPS: dict[str, str] = {
    "1m": "minute",
    "5m": "minute",
    "15m": "minute",
    "30m": "minute",
    "1h": "hour",
    "4h": "hour",
    "1d": "day",
    "1w": "day",
}
TARGET_CLIP = 8.0  # z-scored targets beyond ±8 are clipped (flat stretches make rvol tiny)
_RVOL = spec.FEATURE_NAMES.index("rvol_20")


def xgb_feature_names() -> list[str]:
    """XGBoost's ordered inputs: indicators, the CNN score, then market metadata."""
    return [*spec.FEATURE_NAMES, "cnn_score", *spec.METADATA]


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
    label_bar: np.ndarray  # datetime64[ns] open time of the bar whose close ends the label
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

    def xgb_matrix(self, idx: np.ndarray, cnn_score: np.ndarray) -> np.ndarray:
        """XGBoost inputs of samples ``idx`` in :func:`xgb_feature_names` order, float32."""
        sids, rows = self.sid[idx], self.row[idx]
        out = np.empty((len(idx), len(xgb_feature_names())), dtype=np.float32)
        n_ind = len(spec.FEATURE_NAMES)
        for s in np.unique(sids):
            mask = sids == s
            out[mask, :n_ind] = self.series[s].indicators[rows[mask]]
            out[mask, n_ind + 1 :] = self.series[s].metadata
        out[:, n_ind] = cnn_score
        return out

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
    labels = make_labels(bars, horizon).iloc[spec.WARMUP :]
    return SeriesData(
        symbol=symbol,
        timeframe=timeframe,
        asset_class=asset_class,
        ts=table["ts"].to_numpy(dtype="datetime64[ns]"),
        indicators=table[list(spec.FEATURE_NAMES)].to_numpy(dtype=np.float32),
        channels=np.ascontiguousarray(table[list(spec.CHANNELS)].to_numpy(dtype=np.float32)),
        metadata=np.asarray(spec.metadata_values(asset_class, timeframe), dtype=np.float32),
        fwd_return=labels["fwd_return"].to_numpy(dtype=np.float64),
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
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("sid", "row", "ts", "label_bar", "y", "scale")}
    digest = hashlib.sha256()
    for i, s in enumerate(series):
        n = len(s.ts)
        rows = np.arange(window - 1, n - horizon, dtype=np.int32)
        rows = rows[np.isfinite(s.fwd_return[rows])]
        rvol = s.indicators[rows, _RVOL].astype(np.float64)
        parts["sid"].append(np.full(len(rows), i, dtype=np.int32))
        parts["row"].append(rows)
        parts["ts"].append(s.ts[rows])
        parts["label_bar"].append(s.ts[rows + horizon])
        parts["y"].append(s.fwd_return[rows])
        parts["scale"].append(np.maximum(np.nan_to_num(rvol, nan=0.0), 1e-6) * np.sqrt(horizon))
        for chunk in (s.series_id.encode(), s.ts.view(np.int64), s.indicators, s.channels, s.fwd_return):
            digest.update(chunk if isinstance(chunk, bytes) else np.ascontiguousarray(chunk).tobytes())
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return Dataset(series=series, window=window, horizon=horizon, data_hash=digest.hexdigest(), **arrays)


@dataclass(frozen=True)
class Fold:
    """One walk-forward window: test rows in [start, end), train rows labelled before start."""

    index: int
    start: pd.Timestamp
    end: pd.Timestamp
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class Plan:
    """Boolean sample masks of every stage (see the module docstring for the picture)."""

    cnn_cutoff: pd.Timestamp
    cnn_fit: np.ndarray
    cnn_val: np.ndarray
    xgb: np.ndarray
    folds: tuple[Fold, ...]

    @property
    def cnn_train(self) -> np.ndarray:
        return self.cnn_fit | self.cnn_val


def _split(data: Dataset, cutoff: pd.Timestamp, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) at ``cutoff`` with each row's real label bar as its purge (see tradeloop.splits)."""
    ts = pd.Series(pd.DatetimeIndex(data.ts, tz="UTC"))
    spacing = pd.Series(pd.to_timedelta(data.label_bar - data.ts)) / data.horizon
    try:
        split = time_split(ts, spacing, horizon=data.horizon, cutoff=cutoff)
    except InvalidInput as exc:
        raise InvalidInput("split", f"{what}: {exc.reason}") from exc
    return split.train, split.test


def plan(data: Dataset, *, cnn_fraction: float, val_fraction: float, folds: int) -> Plan:
    """Cut time for all series together; raises :class:`InvalidInput` for any empty stage."""
    if folds < 1:
        raise InvalidInput("folds", f"need at least one walk-forward fold, got {folds}")
    ts = data.ts.view(np.int64)

    def at(values: np.ndarray, q: float) -> pd.Timestamp:
        return pd.Timestamp(int(np.quantile(values, q, method="higher")), tz="UTC")

    cnn_cutoff = at(ts, cnn_fraction)
    cnn_train, xgb = _split(data, cnn_cutoff, "CNN period")
    val_cut = at(ts[cnn_train], 1.0 - val_fraction)
    cnn_fit, after_val = _split(data, val_cut, "CNN validation")
    cnn_fit &= cnn_train
    cnn_val = after_val & cnn_train
    bounds = [at(ts[xgb], j / (folds + 1)) for j in range(1, folds + 1)]
    end = pd.Timestamp(int(ts.max()) + 1, tz="UTC")
    out = []
    for k, start in enumerate(bounds):
        stop = bounds[k + 1] if k + 1 < len(bounds) else end
        train, after = _split(data, start, f"fold {k + 1}")
        test = after & (ts < stop.value)
        train &= xgb
        if not train.any() or not test.any():
            raise InvalidInput("split", f"fold {k + 1} [{start}, {stop}) has an empty train or test set")
        out.append(Fold(k + 1, start, stop, train, test))
    for name, mask in (("CNN fit", cnn_fit), ("CNN validation", cnn_val), ("XGBoost", xgb)):
        if not mask.any():
            raise InvalidInput("split", f"the {name} set is empty; add data or use fewer folds")
    return Plan(cnn_cutoff, cnn_fit, cnn_val, xgb, tuple(out))
