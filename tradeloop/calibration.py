"""Serving-side maps from the model's score to ``prob_up`` and ``signal``, stored as numbers.

The model's score is its predicted volatility-scaled forward return (a z-score). Both maps are
fitted by training (``training.calibrate``) and written into ``bundle.json`` as plain lists, so
serving, the gate's re-scoring and the evaluation apply the very same arithmetic and nothing is
ever unpickled:

* ``calibration``: a monotone (isotonic) map, as knots ``x`` (scores, increasing) and ``y``
  (probabilities, non-decreasing); scores between knots interpolate linearly, outside clamp.
* ``band``: the no-trade band ``threshold`` on |score|: ``signal`` is sign(score) beyond it, else 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tradeloop.errors import BundleIntegrityError

__all__ = ["prob_up", "signal"]


def prob_up(calibration: dict[str, Any], score: np.ndarray) -> np.ndarray:
    """Calibrated probability that the forward return is positive, per score (float32)."""
    x = np.asarray(calibration.get("x", []), dtype=np.float64)
    y = np.asarray(calibration.get("y", []), dtype=np.float64)
    if len(x) == 0 or len(x) != len(y) or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
        raise BundleIntegrityError("calibration: knots must be non-empty, equal in length and monotone")
    return np.interp(np.asarray(score, dtype=np.float64), x, y).astype(np.float32)


def signal(band: dict[str, Any], score: np.ndarray) -> np.ndarray:
    """-1 / 0 / +1 per score: no trade inside the band, the score's sign outside it (int8)."""
    threshold = float(band.get("threshold", np.nan))
    if not np.isfinite(threshold) or threshold < 0:
        raise BundleIntegrityError(f"band: threshold {threshold!r} is not a non-negative number")
    score = np.asarray(score, dtype=np.float64)
    return np.where(np.abs(score) > threshold, np.sign(score), 0).astype(np.int8)
