"""Serving-side maps from the model's score to ``prob_up`` and ``signal``, stored as numbers.

The model's score is its predicted volatility-scaled forward return (a z-score). Both maps are
fitted by training (``training.calibrate``) and written into ``bundle.json`` as plain lists, so
serving, the gate's re-scoring and the evaluation apply the very same arithmetic and nothing is
ever unpickled:

* ``calibration``: a monotone (isotonic) map, as knots ``x`` (scores, increasing) and ``y``
  (probabilities, non-decreasing); scores between knots interpolate linearly, outside clamp.
* ``band``: the no-trade band ``threshold`` on |score|: ``signal`` is sign(score) beyond it, else 0.

:class:`ScoreMaps` checks both once and keeps them as arrays (a loaded bundle holds one, so a
request pays for the arithmetic only); :func:`prob_up` and :func:`signal` are the same arithmetic
for callers that hold the raw ``bundle.json`` dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tradeloop.errors import BundleIntegrityError

__all__ = ["ScoreMaps", "prob_up", "signal"]


@dataclass(frozen=True, eq=False)
class ScoreMaps:
    """A bundle's calibration knots (float64) and band threshold, checked once."""

    knots_x: np.ndarray
    knots_y: np.ndarray
    threshold: float

    @classmethod
    def from_manifest(cls, calibration: dict[str, Any], band: dict[str, Any]) -> ScoreMaps:
        """The maps of ``bundle.json``'s ``calibration`` and ``band``; BundleIntegrityError if either
        is malformed (non-monotone or unequal knots, a threshold that is not a number ≥ 0)."""
        return cls(*_knots(calibration), _threshold(band))

    def prob_up(self, score: np.ndarray) -> np.ndarray:
        """As :func:`prob_up`, with the knots checked at load."""
        return _interp(self.knots_x, self.knots_y, score)

    def signal(self, score: np.ndarray) -> np.ndarray:
        """As :func:`signal`, with the threshold checked at load."""
        return _outside(self.threshold, score)


def _knots(calibration: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(calibration.get("x", []), dtype=np.float64)
    y = np.asarray(calibration.get("y", []), dtype=np.float64)
    if len(x) == 0 or len(x) != len(y) or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
        raise BundleIntegrityError("calibration: knots must be non-empty, equal in length and monotone")
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _threshold(band: dict[str, Any]) -> float:
    threshold = float(band.get("threshold", np.nan))
    if not np.isfinite(threshold) or threshold < 0:
        raise BundleIntegrityError(f"band: threshold {threshold!r} is not a non-negative number")
    return threshold


def _interp(x: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    return np.interp(np.asarray(score, dtype=np.float64), x, y).astype(np.float32)


def _outside(threshold: float, score: np.ndarray) -> np.ndarray:
    score = np.asarray(score, dtype=np.float64)
    return np.where(np.abs(score) > threshold, np.sign(score), 0).astype(np.int8)


def prob_up(calibration: dict[str, Any], score: np.ndarray) -> np.ndarray:
    """Calibrated probability that the forward return is positive, per score (float32)."""
    return _interp(*_knots(calibration), score)


def signal(band: dict[str, Any], score: np.ndarray) -> np.ndarray:
    """-1 / 0 / +1 per score: no trade inside the band, the score's sign outside it (int8)."""
    return _outside(_threshold(band), score)
