"""XGBoost prediction of small dense batches without ``Booster.inplace_predict``'s per-call set-up.

For one row of 24 features and 60 trees, ``inplace_predict`` takes ~200 µs on a 2-core VM where
XGBoost's own prediction takes ~40 µs: in Python it rebuilds its JSON arguments, probes the
input's type a dozen ways and copies the result through several ctypes conversions; in C++ it
creates a fresh proxy DMatrix per call, whose context reads the cgroup CPU quota files (five
syscalls). :class:`DensePredictor` makes the very C call ``inplace_predict`` makes for a numpy
array (``XGBoosterPredictFromDense``, same arguments) with the arguments built once and one proxy
DMatrix per thread: the proxy only holds the input's address for the call, so threads must not
share one, while XGBoost documents in-place prediction as thread-safe otherwise.

The answer is XGBoost's own, bit for bit: :func:`dense_predictor` compares both on a probe batch
when it is built and returns ``inplace_predict`` itself when this XGBoost lacks the C entry points
or disagrees (a different XGBoost build), so a caller never has to care which it got.
"""

from __future__ import annotations

import ctypes
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DensePredictor", "dense_predictor"]

log = logging.getLogger("tradeloop.inference")

# inplace_predict's own arguments for plain predictions (type 0 = value; no iteration range).
_ARGS = json.dumps(
    {
        "type": 0,
        "training": False,
        "iteration_begin": 0,
        "iteration_end": 0,
        "missing": float("nan"),
        "strict_shape": False,
        "cache_id": 0,
    }
).encode()


class _Proxy:
    """One XGBoost proxy DMatrix, freed with this object (each thread keeps its own)."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.handle = ctypes.c_void_p()
        _check(lib, lib.XGProxyDMatrixCreate(ctypes.byref(self.handle)))

    def __del__(self) -> None:
        if self.handle:
            self._lib.XGDMatrixFree(self.handle)
            self.handle = ctypes.c_void_p()


def _check(lib: Any, ret: int) -> None:
    if ret != 0:
        from xgboost.core import XGBoostError

        raise XGBoostError(lib.XGBGetLastError().decode())


class DensePredictor:
    """``booster.inplace_predict(x)`` for C-contiguous float32 ``x`` of shape (N, K) (see above)."""

    def __init__(self, booster: Any, lib: Any) -> None:
        self.booster = booster
        self.num_features = int(booster.num_features())
        self._lib = lib
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"Feature shape mismatch, expected: {self.num_features}, got {x.shape}")
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            proxy = self._local.proxy = _Proxy(self._lib)
        ptr = x.__array_interface__["data"][0]
        array = (
            f'{{"data": [{ptr}, true], "shape": [{x.shape[0]}, {x.shape[1]}], '
            f'"strides": null, "typestr": "<f4", "version": 3}}'
        ).encode()
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        preds = ctypes.POINTER(ctypes.c_float)()
        _check(
            self._lib,
            self._lib.XGBoosterPredictFromDense(
                self.booster.handle,
                array,
                _ARGS,
                proxy.handle,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            ),
        )
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        out = np.empty(out_shape, dtype=np.float32)
        if out.size:
            ctypes.memmove(out.ctypes.data, preds, out.nbytes)  # XGBoost reuses its buffer: copy now
        return out


def dense_predictor(booster: Any, probe_rows: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """A :class:`DensePredictor` for ``booster`` when it answers exactly as ``inplace_predict`` on a
    probe batch (random rows, zeros, large values, NaN), else ``booster.inplace_predict``."""
    try:
        from xgboost.core import _LIB as lib

        predictor = DensePredictor(booster, lib)
        rng = np.random.default_rng(0)
        probe = rng.normal(0.0, 3.0, size=(probe_rows, predictor.num_features)).astype(np.float32)
        probe[0] = 0.0
        probe[1] = 1e6
        probe[2, ::2] = np.nan
        for rows in (probe, probe[:1], probe[1:2]):
            if not np.array_equal(predictor(rows), booster.inplace_predict(rows), equal_nan=True):
                raise ValueError("predictions differ from inplace_predict")
    except Exception as exc:  # any XGBoost build this cannot match: use its public call
        log.warning("XGBoost fast path unavailable (%s: %s); using inplace_predict", type(exc).__name__, exc)
        return booster.inplace_predict
    return predictor
