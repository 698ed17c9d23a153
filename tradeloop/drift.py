"""Drift statistics of the monitor: compact training references, PSI / KS / Wasserstein, breach rules.

At training time :func:`reference_stats` condenses each feature's training distribution into a
small JSON-able record (PSI bin edges, a quantile sketch, moments, NaN share, autocorrelation
time) that travels in the bundle's ``bundle.json``. At monitoring time :func:`drift` compares a
window of recent rows with that record, every feature at once, and :func:`breaches` applies the
thresholds and the multiple-testing correction. :func:`consecutive_breaches` is the hysteresis
that turns a run of breaching checks into one trigger. The same functions serve prediction drift:
pass a 1-column array of ``prob_up`` with ``names=["prob_up"]``.

What the numbers mean (and what a caller can rely on):

* **PSI** uses the reference's decile bins (fewer where quantiles tie) and the reference's own
  share per bin, so ties and atoms (RSI 0.5 on a flat window) keep the bins valid. Empty bins are
  floored at :data:`PSI_EPSILON` so an empty bin gives a large but finite term.
* **KS** is the two-sample statistic between the current rows and the reference, where the
  reference CDF is the sketch's piecewise-linear CDF; it differs from ``scipy.stats.ks_2samp`` on
  the full reference by at most one sketch interval's mass (1 / ``quantiles``; observed ≤ 0.0055
  on real features, tests/monitor/test_drift.py). Its p-value is scipy's distribution of the
  statistic, ``kstwo.sf(D, round(n·m / (n + m)))`` as ``ks_2samp(method="asymp")`` computes it
  (``kstwobign`` above :data:`EXACT_KS_N`), but with ``n`` and ``m`` divided by the reference's
  integrated autocorrelation time τ. Feature rows an hour apart are not independent (a 30-bar
  SMA ratio barely moves in an hour); without the deflation the KS test fires on almost every
  window of real data (the drift rule breaches on 99% of adjacent two-week pairs; 22% with τ).
* **Wasserstein-1** is computed exactly between the current sample and the sketch's distribution
  (within 0.01 reference std of scipy's ``wasserstein_distance`` on the full samples) and
  divided by the reference **standard deviation**, not the IQR: for a pure shift it reads in
  standard deviations, and a normal whose scale grows by s reads 0.8·|s - 1|.

Why not scipy directly: ``ks_2samp`` and ``wasserstein_distance`` take 1-D samples, so a check is
a loop over features that re-sorts the full training sample each time (~40x slower at 50
features, bench/drift.py) and needs the training rows at monitoring time. Here the heavy work
(sort, CDF look-ups, integrals) runs once over a block of features; Python loops only touch
per-feature scalars, a binary search of ≤ 9 bin edges per feature, or blocks of features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import fft as sp_fft
from scipy import stats

from tradeloop.errors import InvalidInput

__all__ = [
    "DEFAULT_CONSECUTIVE",
    "DEFAULT_WINDOW_BARS",
    "PSI_EPSILON",
    "REFERENCE_VERSION",
    "Breaches",
    "DriftTable",
    "DriftThresholds",
    "FeatureDrift",
    "breaches",
    "consecutive_breaches",
    "drift",
    "reference_by_series",
    "reference_stats",
]

REFERENCE_VERSION = 1
PSI_EPSILON = 1e-4  # floor on a bin's share: an empty bin adds ≈ share · ln(share / 1e-4), not ∞
PSI_BINS = 10
SIGNIFICANT = 6  # digits kept in JSON: features are float32 (~7 digits); drift needs far fewer
TAIL_PROBS = (1e-4, 3e-4, 1e-3, 3e-3)  # extra sketch points in each tail (see _probabilities)
MAX_LAG = 2_000  # longest lag the autocorrelation time looks at (~12 weeks of 1h bars)
MISSING_ROSE = 0.05  # NaN share rise that flags a feature (a pipeline fault more than drift)
EXACT_KS_N = 5_000  # above this effective size the KS p-value uses the Kolmogorov limit
DEFAULT_WINDOW_BARS = 336  # a check looks at 2 weeks of 1h bars (validated in tests/monitor)
DEFAULT_CONSECUTIVE = 3  # k: breaching checks in a row before the monitor triggers
BLOCK_ELEMENTS = 1 << 20  # features × rows per block of a check: temporaries of ~8 MiB each


def _probabilities(quantiles: int) -> np.ndarray:
    """The sketch's probability grid: ``quantiles`` equal steps plus a few points in each tail.

    Heavy tails decide the Wasserstein distance: between the 99th percentile and the maximum a
    linear quantile function can be off by several percent of a standard deviation, so the
    outermost step is split at 0.3%, 0.1%, 0.03% and 0.01% (and mirrored).
    """
    body = np.linspace(0.0, 1.0, quantiles + 1)
    tails = np.array([p for p in TAIL_PROBS if p < 1.0 / quantiles])
    return np.unique(np.concatenate([body, tails, 1.0 - tails]))


def _round(values: np.ndarray) -> list[float]:
    """JSON floats with :data:`SIGNIFICANT` digits; rounding is monotone, so sorted stays sorted."""
    return [float(f"{v:.{SIGNIFICANT}g}") for v in np.asarray(values, dtype=np.float64).tolist()]


def _as_matrix(values: Any, names: Sequence[str], what: str) -> np.ndarray:
    """A float (rows, len(names)) array with ±inf read as missing; a 1-D array is one column."""
    names = list(names)
    if not names:
        raise InvalidInput("names", "no feature names given")
    if len(set(names)) != len(names):
        raise InvalidInput("names", "duplicate feature names")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(what, f"not an array of numbers ({exc})") from exc
    if arr.ndim == 1 and len(names) == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InvalidInput(what, f"expected a 2-D array (rows, features), got shape {arr.shape}")
    if arr.shape[1] != len(names):
        raise InvalidInput("names", f"{len(names)} names for {arr.shape[1]} columns of {what}")
    if arr.shape[0] == 0:
        raise InvalidInput(what, "empty: no rows to compare")
    if arr.dtype.kind not in "fiub":
        raise InvalidInput(what, f"expected numbers, got dtype {arr.dtype}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    return arr if finite.all() else np.where(finite, arr, np.nan)  # never written to: no copy needed


def _sorted_columns(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features, rows): each feature's values sorted, missing last, and its count of finite values.

    Internally every array is feature-major and C-contiguous, so per-feature work runs along
    contiguous rows and flat indices (``row · width + i``) address any feature's element.
    """
    ordered = np.empty(arr.shape[::-1], dtype=arr.dtype)  # a copy: the caller's rows keep their order
    for start in range(0, len(arr), 2048):  # blocked transpose: 4x faster than one strided copy
        ordered[:, start : start + 2048] = arr[start : start + 2048].T
    ordered.sort(axis=1)
    return ordered, np.count_nonzero(~np.isnan(ordered), axis=1)


def _searchsorted_rows(
    sorted_rows: np.ndarray, queries: np.ndarray, side: Literal["left", "right"]
) -> np.ndarray:
    """``np.searchsorted`` of each row of ``queries`` in the same row of ``sorted_rows``.

    numpy's searchsorted has no axis, so both arrays are mapped, row by row, onto the disjoint
    key ranges [2f, 2f + 1] by the same monotone affine map (missing values to 2f + 1.5, after
    every finite one, where ``np.sort`` puts them); one search over the flattened keys answers
    every row. Equal inputs give equal keys, so ties behave as in numpy; two distinct values
    closer than ~1e-15 of the row's range may count as equal. A few queries into long rows (bin
    edges into a sorted window) take one binary search per row instead: O(F log n), not O(F n).
    """
    n_rows, k = sorted_rows.shape
    if 16 * queries.shape[1] <= k:
        return np.array([np.searchsorted(r, q, side=side) for r, q in zip(sorted_rows, queries, strict=True)])
    lo = np.fmin(np.fmin.reduce(sorted_rows, axis=1), np.fmin.reduce(queries, axis=1))
    hi = np.fmax(np.fmax.reduce(sorted_rows, axis=1), np.fmax.reduce(queries, axis=1))
    lo = np.nan_to_num(lo)[:, None]
    scale = 1.0 / np.where(hi > lo[:, 0], hi - lo[:, 0], 1.0)[:, None]
    offset = 2.0 * np.arange(n_rows)[:, None]

    def keys(a: np.ndarray) -> np.ndarray:
        key = a - lo
        key *= scale
        np.minimum(key, 1.0, out=key)
        np.maximum(key, 0.0, out=key)
        key += offset
        return np.where(np.isnan(key), offset + 1.5, key).ravel()

    found = np.searchsorted(keys(sorted_rows), keys(queries), side=side).reshape(queries.shape)
    found -= k * np.arange(n_rows)[:, None]
    return found


def _take(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[f, index[f, i]]`` for every feature f, as one flat gather."""
    flat = index + (table.shape[1] * np.arange(table.shape[0]))[:, None]
    return np.take(table.ravel(), flat)


def _quantiles_of_sorted(ordered: np.ndarray, counts: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default method) of each feature's finite values."""
    last = (np.maximum(counts, 1) - 1)[:, None]
    h = last * probs[None, :]
    below = np.floor(h).astype(np.int64)
    lo = _take(ordered, below).astype(np.float64)
    hi = _take(ordered, np.minimum(below + 1, last)).astype(np.float64)
    return lo + (h - below) * (hi - lo)


def _autocorrelation_time(arr: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation time τ per column (rows in time order), Sokal's adaptive window.

    τ = 1 + 2 Σ ρ_k, summed up to the first lag M ≥ 5 τ(M) (the estimator ``emcee`` uses), from
    one FFT over all columns of the last 32 · MAX_LAG rows. n rows carry about the information
    of n / τ independent ones. τ ≥ 1 (anti-correlation is not credited); missing rows count as
    the mean.
    """
    n = arr.shape[0]
    if n < 4:
        return np.ones(arr.shape[1])
    x = np.array(arr[-min(n, 32 * MAX_LAG) :].T, dtype=np.float64, order="C")  # feature-major
    with np.errstate(invalid="ignore"):
        x -= np.nanmean(x, axis=1, keepdims=True)
    x = np.nan_to_num(x, nan=0.0)
    size = sp_fft.next_fast_len(2 * x.shape[1] - 1, real=True)
    spectrum = sp_fft.rfft(x, n=size, axis=1)
    acf = sp_fft.irfft(spectrum.real**2 + spectrum.imag**2, n=size, axis=1)[:, : min(x.shape[1], MAX_LAG + 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.nan_to_num(acf / acf[:, :1])  # a constant column has no autocorrelation to speak of
    taus = 2.0 * np.cumsum(rho, axis=1) - 1.0
    done = np.arange(taus.shape[1])[None, :] >= 5.0 * taus
    window = np.where(done.any(axis=1), np.argmax(done, axis=1), taus.shape[1] - 1)
    return np.maximum(taus[np.arange(len(taus)), window], 1.0)


def reference_stats(
    values: np.ndarray, names: Sequence[str], *, quantiles: int = 100, psi_bins: int = PSI_BINS
) -> dict[str, Any]:
    """The training distribution of each feature, compact and JSON-able (for ``bundle.json``).

    ``values`` is (rows, features) in time order (the order matters only for the autocorrelation
    time τ that deflates KS sample sizes). Per feature: ``n`` finite rows, ``nan_share``,
    ``mean``, ``std``, ``tau``, ``psi_edges`` (interior edges of the decile bins, ties merged so
    every bin is valid; a constant feature gets the bins below / at / above its value) with
    ``psi_share`` (the reference share per bin, counted, not assumed 1/10), and ``sketch``: the
    quantiles at the shared ``probs`` grid (``quantiles`` equal steps plus tail points).

    Precision given up: the sketch replaces the reference CDF by straight lines between its
    points, so a KS statistic computed against it is off by at most one interval's mass
    (1 / ``quantiles``), and values are rounded to 6 significant digits. With the defaults one
    feature costs ~1.6 KB of JSON (21 features: ~33 KB), whatever the number of rows.
    """
    if isinstance(quantiles, bool) or not isinstance(quantiles, int) or quantiles < 2:
        raise InvalidInput("quantiles", f"need an integer ≥ 2, got {quantiles!r}")
    if isinstance(psi_bins, bool) or not isinstance(psi_bins, int) or psi_bins < 2:
        raise InvalidInput("psi_bins", f"need an integer ≥ 2, got {psi_bins!r}")
    arr = _as_matrix(values, names, "values")
    ordered, counts = _sorted_columns(arr)
    if (counts == 0).any():
        empty = [n for n, c in zip(names, counts, strict=True) if c == 0]
        raise InvalidInput("values", f"no finite reference values for {empty}")
    probs = _probabilities(quantiles)
    sketch = _quantiles_of_sorted(ordered, counts, probs)
    deciles = _quantiles_of_sorted(ordered, counts, np.arange(1, psi_bins) / psi_bins)
    edge_lists = []
    for row in deciles:  # per-feature scalars only: ≤ psi_bins - 1 values each
        edges = np.unique(np.asarray(_round(row)))
        if len(edges) == 1:  # constant: its value gets a bin of its own, distinct after rounding
            edges = np.array([edges[0], edges[0] + 1e-4 * abs(edges[0]) if edges[0] else 1e-12])
        edge_lists.append(edges)
    below = _searchsorted_rows(ordered, _pad_edges(edge_lists), "left")  # rows < each edge
    zeros = np.zeros((len(counts), 1))
    share = np.diff(np.hstack([zeros, below, counts[:, None]]), axis=1) / counts[:, None]
    mean_of, std_of = (np.mean, np.std) if (counts == len(arr)).all() else (np.nanmean, np.nanstd)
    mean, std = mean_of(ordered, axis=1, dtype=np.float64), std_of(ordered, axis=1, dtype=np.float64)
    tau = _autocorrelation_time(arr)
    features = {}
    for j, name in enumerate(names):
        features[name] = {
            "n": int(counts[j]),
            "nan_share": float(1.0 - counts[j] / arr.shape[0]),
            "mean": _round(mean[j : j + 1])[0],
            "std": _round(std[j : j + 1])[0],
            "tau": round(float(tau[j]), 2),
            "psi_edges": _round(edge_lists[j]),
            "psi_share": _round(share[j, : len(edge_lists[j]) + 1]),
            "sketch": _round(sketch[j]),
        }
    return {
        "version": REFERENCE_VERSION,
        "rows": int(arr.shape[0]),
        "probs": [float(p) for p in probs],
        "features": features,
    }


def reference_by_series(frame: pd.DataFrame, names: Sequence[str], series_col: str) -> dict[str, Any]:
    """``{"pooled": reference of all rows, "series": {series id: reference of its rows}}``.

    Rows are taken in frame order within each series (sort by time first). The pooled τ of each
    feature is the row-weighted mean of the series' τ, since concatenated series would otherwise
    add spurious correlation at the joins (and a series level shift reads as persistence).
    """
    missing = [c for c in [*names, series_col] if c not in frame.columns]
    if missing:
        raise InvalidInput("frame", f"missing columns {missing}")
    if frame.empty:
        raise InvalidInput("frame", "empty window: no rows to compare")
    series = {
        str(sid): reference_stats(group[list(names)].to_numpy(), names)
        for sid, group in frame.groupby(series_col, sort=True, observed=True)
    }
    pooled = reference_stats(frame[list(names)].to_numpy(), names)
    weights = np.array([ref["rows"] for ref in series.values()], dtype=np.float64)
    for name in names:
        taus = np.array([ref["features"][name]["tau"] for ref in series.values()])
        pooled["features"][name]["tau"] = round(float(np.average(taus, weights=weights)), 2)
    return {"pooled": pooled, "series": series}


def _pad_edges(edge_lists: Sequence[np.ndarray]) -> np.ndarray:
    """Ragged edge lists as one (F, E) array, padded with +inf (bins that nothing falls into)."""
    out = np.full((len(edge_lists), max(len(e) for e in edge_lists)), np.inf)
    for j, edges in enumerate(edge_lists):
        out[j, : len(edges)] = edges
    return out


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's drift: statistics plus ``flags`` for conditions that make them less telling.

    Flags: ``constant_reference`` (the training values never varied), ``no_current_values``
    (every current value missing: the statistics are NaN), ``missing_rose`` (the current NaN
    share exceeds the reference's by more than 0.05).
    """

    name: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    wasserstein_normalised: float
    n_current: int
    nan_share: float
    reference_nan_share: float
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DriftTable:
    """Per-feature drift of one window, in the order of the names passed to :func:`drift`."""

    features: tuple[FeatureDrift, ...]
    n_reference: int

    def __getitem__(self, name: str) -> FeatureDrift:
        for row in self.features:
            if row.name == name:
                return row
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [row.name for row in self.features]

    def column(self, attr: str) -> np.ndarray:
        """One statistic for every feature, as an array (``table.column("psi")``)."""
        return np.array([getattr(row, attr) for row in self.features], dtype=np.float64)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(row) for row in self.features]).set_index("name")


def _reference_arrays(reference: Mapping[str, Any], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The reference records of ``names`` as feature-major arrays for vectorised use."""
    try:
        if reference.get("version") != REFERENCE_VERSION:
            raise InvalidInput("reference", f"version {reference.get('version')!r}, need {REFERENCE_VERSION}")
        probs = np.asarray(reference["probs"], dtype=np.float64)
        records = [reference["features"][name] for name in names]
        sketch = np.array([r["sketch"] for r in records], dtype=np.float64)
        edges = _pad_edges([np.asarray(r["psi_edges"], dtype=np.float64) for r in records])
        share = np.zeros((len(records), edges.shape[1] + 1))
        for j, r in enumerate(records):
            share[j, : len(r["psi_share"])] = r["psi_share"]
        scalars = {
            k: np.array([r[k] for r in records], dtype=np.float64) for k in ("n", "std", "tau", "nan_share")
        }
    except KeyError as exc:
        raise InvalidInput("reference", f"no reference for {exc.args[0]!r}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput("reference", f"not a reference_stats() record ({exc})") from exc
    if sketch.shape[1] != len(probs) or len(probs) < 2:
        raise InvalidInput("reference", f"sketch of {sketch.shape[1]} points for {len(probs)} probabilities")
    return {"probs": probs, "edges": edges, "share": share, **scalars, **_cdf_tables(sketch, probs)}


def _cdf_tables(sketch: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Look-up tables that make the sketch's CDF, its integral and its quantile integral O(1) each.

    Values are shifted by each feature's minimum ``q0`` (so sums stay small whatever the level).
    Tables of width P + 1 are indexed by j = number of sketch points ≤ x: on [knot_j, next point)
    the CDF is ``base_j + (x - knot_j) · slope_j`` and its integral from -∞ is
    ``hk_j + (x - knot_j) · (base_j + F(x)) / 2``; j = 0 and j = P are the flat parts (0 and 1).
    ``pfirst_j`` is the CDF's left limit at knot_j (lower than ``base_j`` at an atom). ``iq`` is
    ∫₀^p (Q(u) - q0) du at each probability, ``qslope`` the quantile function's slope after it.
    """
    n_rows = len(sketch)
    zero = np.zeros((n_rows, 1))
    s0 = sketch - sketch[:, :1]
    dq, dp = np.diff(s0, axis=1), np.diff(probs)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(dq > 0, dp / dq, 0.0)
    starts = np.ones(sketch.shape, dtype=bool)
    starts[:, 1:] = dq != 0
    first = np.maximum.accumulate(np.where(starts, np.arange(len(probs)), 0), axis=1)
    return {
        "q0": sketch[:, 0],
        "sketch0": s0,
        "knot": np.hstack([zero, s0]),
        "base": np.broadcast_to(np.concatenate([[0.0], probs]), (n_rows, len(probs) + 1)).copy(),
        "slope": np.hstack([zero, slope, zero]),
        "hk": np.hstack([zero, zero, np.cumsum(dq * (probs[:-1] + probs[1:]) / 2, axis=1)]),
        "pfirst": np.hstack([zero, probs[first]]),
        "iq": np.hstack([zero, np.cumsum(dp * (s0[:, :-1] + s0[:, 1:]) / 2, axis=1)]),
        "qslope": dq / dp,
    }


def _psi(ordered: np.ndarray, counts: np.ndarray, edges: np.ndarray, ref_share: np.ndarray) -> np.ndarray:
    below = _searchsorted_rows(ordered, edges, "left")
    cur = np.diff(np.hstack([np.zeros((len(counts), 1)), below, counts[:, None]]), axis=1)
    cur = np.maximum(cur / np.maximum(counts, 1)[:, None], PSI_EPSILON)
    ref = np.maximum(ref_share, PSI_EPSILON)
    return ((cur - ref) * np.log(cur / ref)).sum(axis=1)


def _ecdf_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted rows: how many values are ≤ and < each value (ties share their run's counts)."""
    n_rows, m = x.shape
    flat = x.ravel()
    new = np.empty(flat.shape, dtype=bool)
    new[0] = True
    np.not_equal(flat[1:], flat[:-1], out=new[1:])
    new[::m] = True
    i = np.arange(m)[None, :]
    if new.all():  # no ties: the common case for continuous features
        return i + 1, i
    run = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    stops = np.append(starts[1:], flat.size)
    base = (m * np.arange(n_rows))[:, None]
    return stops[run].reshape(x.shape) - base, starts[run].reshape(x.shape) - base


def _ks_and_w1(x: np.ndarray, counts: np.ndarray, ref: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """KS statistic and Wasserstein-1 between each row's sorted values and the sketch, exactly.

    KS: sup |F_current - F_sketch| is reached on one side of a current value, so both one-sided
    limits are checked at every value (tie runs included). W1 = ∫ |F_current - F_sketch| dx: on the
    gap between neighbours x_i < x_{i+1}, F_current is c = (i+1)/n and, with
    G(x) = ∫_{-∞}^x F_sketch - c·x, the gap contributes G(x_i) + G(x_{i+1}) - 2 min G, the minimum
    being at the sketch's c-quantile when it falls inside the gap, -∫₀^c Q_sketch there. Both
    tails add the remaining mass. No merge of the two grids, no per-feature loop.
    """
    n_rows, m = x.shape
    rows = np.arange(n_rows)[:, None]
    probs = ref["probs"]
    x0 = x - ref["q0"][:, None]
    below = _searchsorted_rows(x0, ref["sketch0"], "left")  # current values < each sketch point
    hist = np.bincount((below + (m + 1) * rows).ravel(), minlength=n_rows * (m + 1))
    flat = np.cumsum(hist.reshape(n_rows, m + 1)[:, :m], axis=1)  # j: sketch points ≤ each value
    flat += ref["knot"].shape[1] * rows  # ... as a flat index into the (F, P + 1) tables
    d = np.take(ref["knot"], flat)
    np.subtract(x0, d, out=d)
    base = np.take(ref["base"], flat)
    right = np.take(ref["slope"], flat)
    right *= d
    right += base  # the sketch CDF at each value
    on_knot = d == 0
    left = right  # its left limit differs only on a sketch atom
    if on_knot.any():
        left = right.copy()
        left[on_knot] = np.take(ref["pfirst"], flat[on_knot])
    # n is a scalar when no feature lost values: then every per-rank array below is one shared row
    n = float(max(counts[0], 1)) if (counts == counts[0]).all() else np.maximum(counts, 1)[:, None]
    i = np.arange(m)[None, :]
    if left is not right and np.any(left < right):  # values on a reference atom: exact tie counts
        le, lt = _ecdf_counts(x0)
        above, under = le / n, lt / n
    else:  # otherwise per-element ranks give the same maxima over each tie run
        above, under = (i + 1) / n, i / n
    gap = np.abs(above - right)
    np.fmax(gap, np.abs(under - left), out=gap)
    ks = np.fmax.reduce(gap, axis=1)

    h = base  # ∫_{-∞}^x F_sketch = hk + d · (base + F) / 2, built in place
    h += right
    h *= d
    h *= 0.5
    h += np.take(ref["hk"], flat)
    c = (i[:, :-1] + 1) / n  # F_current on each gap
    k = np.minimum(np.maximum(np.searchsorted(probs, c, side="left"), 1), len(probs) - 1) - 1
    du = c - probs[k]
    kflat = k + len(probs) * rows
    lowest = np.take(ref["qslope"], k + (len(probs) - 1) * rows)  # -min G = ∫₀^c (Q - q0), in place
    lowest *= 0.5 * du
    lowest += np.take(ref["sketch0"], kflat)
    lowest *= du
    lowest += np.take(ref["iq"], kflat)
    g_lo = h[:, :-1] - c * x0[:, :-1]
    g_hi = h[:, 1:] - c * x0[:, 1:]
    inside = right[:, :-1] < c
    inside &= c <= right[:, 1:]
    least = np.minimum(g_lo, g_hi)
    np.negative(lowest, out=least, where=inside)
    area = g_lo
    area += g_hi
    least *= 2.0
    area -= least
    if (counts < m).any():  # gaps past a row's last finite value do not count
        area[i[:, :-1] >= counts[:, None] - 1] = 0.0
    last = np.maximum(counts - 1, 0)[:, None]
    tail = np.take_along_axis(h, last, axis=1) - np.take_along_axis(x0, last, axis=1)
    w1 = h[:, 0] + area.sum(axis=1) + tail[:, 0] + ref["iq"][:, -1]
    return ks, w1


def _compare(arr: np.ndarray, ref: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(finite counts, PSI, KS, W1) of every feature, in blocks of features to bound memory.

    The work is vectorised across the features of a block; blocks only cap the temporaries
    (~a dozen arrays of block × rows float64) at :data:`BLOCK_ELEMENTS` elements each.
    """
    step = max(1, BLOCK_ELEMENTS // max(arr.shape[0], 1))
    parts = []
    for lo in range(0, arr.shape[1], step):
        block = {k: v if k == "probs" else v[lo : lo + step] for k, v in ref.items()}
        ordered, counts = _sorted_columns(arr[:, lo : lo + step])
        x = ordered.astype(np.float64, copy=False)
        parts.append((counts, _psi(x, counts, block["edges"], block["share"]), *_ks_and_w1(x, counts, block)))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def _ks_pvalue(statistic: np.ndarray, en: np.ndarray) -> np.ndarray:
    """P(D ≥ statistic) for effective size ``en``, as ``ks_2samp(method="asymp")`` computes it.

    ``kstwo.sf(D, en)`` (ks_2samp's own call) up to en = :data:`EXACT_KS_N`; above, where it costs
    10-80 ms per value, its limit ``kstwobign.sf(D·√en)``, which overstates p by < 6% at 5,000
    and < 2% at 60,000 (conservative: never an extra alarm).
    """
    out = np.full(statistic.shape, np.nan)
    ok = ~np.isnan(statistic)
    exact = ok & (en <= EXACT_KS_N)
    out[exact] = stats.kstwo.sf(statistic[exact], en[exact])
    out[ok & ~exact] = stats.kstwobign.sf(statistic[ok & ~exact] * np.sqrt(en[ok & ~exact]))
    return np.clip(out, 0.0, 1.0)


def drift(reference: Mapping[str, Any], current: np.ndarray, names: Sequence[str]) -> DriftTable:
    """Drift of a window ``current`` (rows, features) against ``reference``, every feature at once.

    Missing values (NaN, ±inf) are left out of each feature's statistics and reported as its
    ``nan_share``; a feature with no values at all gets NaN statistics and a flag. An empty window,
    a shape that does not match ``names`` or a name the reference lacks raise ``InvalidInput``.
    """
    arr = _as_matrix(current, names, "current")
    ref = _reference_arrays(reference, names)
    counts, psi, ks, w1 = _compare(arr, ref)
    # KS p-value from scipy's distribution of the statistic, on effective sample sizes (module doc)
    n_ref, n_cur = ref["n"] / ref["tau"], counts / ref["tau"]
    with np.errstate(invalid="ignore", divide="ignore"):
        en = np.maximum(np.round(n_ref * n_cur / (n_ref + n_cur)), 1.0)
        pvalue = _ks_pvalue(ks, en)
        w_norm = w1 / ref["std"]
    constant = ref["sketch0"][:, -1] == 0
    w_norm = np.where(constant, np.where(w1 > 0, np.inf, 0.0), w_norm)
    nan_share = 1.0 - counts / arr.shape[0]
    rows = []
    for j, name in enumerate(names):
        flags = [
            flag
            for flag, on in (
                ("constant_reference", constant[j]),
                ("no_current_values", counts[j] == 0),
                ("missing_rose", nan_share[j] - ref["nan_share"][j] > MISSING_ROSE),
            )
            if on
        ]
        empty = counts[j] == 0
        rows.append(
            FeatureDrift(
                name=name,
                psi=math.nan if empty else float(psi[j]),
                ks_statistic=math.nan if empty else float(ks[j]),
                ks_pvalue=math.nan if empty else float(pvalue[j]),
                wasserstein_normalised=math.nan if empty else float(w_norm[j]),
                n_current=int(counts[j]),
                nan_share=float(nan_share[j]),
                reference_nan_share=float(ref["nan_share"][j]),
                flags=tuple(flags),
            )
        )
    return DriftTable(features=tuple(rows), n_reference=int(reference.get("rows", 0)))


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """When a feature, and a window, count as drifted.

    A feature **drifts** when its KS test is significant after the correction across features
    (adjusted p < ``ks_alpha``) **and** its PSI reaches ``psi``: significance says the change is
    not noise, PSI says it is big enough to matter. Wasserstein (``wasserstein``, in reference
    standard deviations) is reported as a breach of its own but does not count toward drift: it
    breaches on ordinary volatility swings (see the false-trigger test). A **window** drifts when
    at least ``min_features`` features drift. ``correction``: ``"bh"`` (Benjamini–Hochberg,
    scipy's ``false_discovery_control``), ``"by"`` (Benjamini–Yekutieli, valid under any
    dependence), ``"bonferroni"`` or ``"none"``.
    """

    psi: float = 0.2
    ks_alpha: float = 0.01
    wasserstein: float = 0.1
    correction: Literal["bh", "by", "bonferroni", "none"] = "bh"
    min_features: int = 1

    def __post_init__(self) -> None:
        if self.correction not in ("bh", "by", "bonferroni", "none"):
            raise InvalidInput("correction", f"unknown correction {self.correction!r}")
        if not 0.0 < self.ks_alpha < 1.0:
            raise InvalidInput("ks_alpha", f"need 0 < ks_alpha < 1, got {self.ks_alpha}")
        if self.min_features < 1:
            raise InvalidInput("min_features", f"need ≥ 1, got {self.min_features}")


@dataclass(frozen=True, slots=True)
class Breaches:
    """Which features breach which test, and whether the window counts as drifted."""

    psi: tuple[str, ...]
    ks: tuple[str, ...]
    wasserstein: tuple[str, ...]
    missing: tuple[str, ...]
    drifted_features: tuple[str, ...]
    drifted: bool
    ks_pvalue_adjusted: dict[str, float] = field(default_factory=dict)


def _adjust(pvalues: np.ndarray, correction: str) -> np.ndarray:
    """p-values corrected across the features that have one (NaN stays NaN)."""
    out = np.full_like(pvalues, np.nan)
    ok = ~np.isnan(pvalues)
    if not ok.any():
        return out
    p = pvalues[ok]
    if correction in ("bh", "by"):
        out[ok] = stats.false_discovery_control(p, method=correction)
    elif correction == "bonferroni":
        out[ok] = np.minimum(p * len(p), 1.0)
    else:
        out[ok] = p
    return out


def breaches(table: DriftTable, thresholds: DriftThresholds | None = None) -> Breaches:
    """Apply ``thresholds`` (defaults: PSI 0.2, KS adjusted p < 0.01 by BH, W/σ 0.1) to ``table``.

    A NaN statistic never breaches; a feature whose values went missing is listed in ``missing``
    (a pipeline fault that retraining would not fix), not in ``drifted_features``.
    """
    t = thresholds or DriftThresholds()
    names = table.names
    adjusted = _adjust(table.column("ks_pvalue"), t.correction)
    psi = table.column("psi") >= t.psi
    ks = adjusted < t.ks_alpha
    w = table.column("wasserstein_normalised") >= t.wasserstein
    drifted = psi & ks
    pick = lambda mask: tuple(n for n, on in zip(names, mask, strict=True) if on)  # noqa: E731
    return Breaches(
        psi=pick(psi),
        ks=pick(ks),
        wasserstein=pick(w),
        missing=tuple(r.name for r in table.features if {"missing_rose", "no_current_values"} & set(r.flags)),
        drifted_features=pick(drifted),
        drifted=int(drifted.sum()) >= t.min_features,
        ks_pvalue_adjusted={n: float(p) for n, p in zip(names, adjusted, strict=True)},
    )


def consecutive_breaches(flags: Sequence[bool], k: int = DEFAULT_CONSECUTIVE) -> list[bool]:
    """Hysteresis: True at each check that ends a run of at least ``k`` breaching checks in a row.

    The monitor triggers on the first True; after it (and its cooldown) the run must start again.
    """
    if k < 1:
        raise InvalidInput("k", f"need k ≥ 1, got {k}")
    out, run = [], 0
    for flag in flags:
        run = run + 1 if flag else 0
        out.append(run >= k)
    return out
