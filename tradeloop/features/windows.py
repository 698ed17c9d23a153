"""CNN input windows: the last W bars × C channels, as zero-copy sliding views.

Windows are never materialised per bar offline (W×C floats per row would multiply the data by
hundreds); :func:`sliding_windows` returns a strided view over the per-bar channel columns, and
row ``i`` of the view is the window that ends at bar ``i + W - 1``. Channels are normalised
past-only per bar, so a window ending at t holds nothing from after t.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tradeloop.errors import InvalidInput
from tradeloop.features import spec

__all__ = ["gather_windows", "sliding_windows", "window_at"]


def sliding_windows(channels: np.ndarray, window: int = spec.WINDOW) -> np.ndarray:
    """Read-only view of shape (n - W + 1, W, C) over a (n, C) channel matrix; no copy."""
    if channels.ndim != 2:
        raise InvalidInput("channels", f"expected a (bars, channels) matrix, got shape {channels.shape}")
    if len(channels) < window:
        raise InvalidInput("window", f"{len(channels)} bars are fewer than one window of {window}")
    view = sliding_window_view(channels, window, axis=0)  # (n - W + 1, C, W)
    return view.transpose(0, 2, 1)


def window_at(channels: np.ndarray, end: int, window: int = spec.WINDOW) -> np.ndarray:
    """The (W, C) window ending at bar index ``end`` (inclusive)."""
    if end < window - 1 or end >= len(channels):
        raise InvalidInput("end", f"bar {end} has no full window of {window} in {len(channels)} bars")
    return channels[end - window + 1 : end + 1]


def gather_windows(
    channels: Sequence[np.ndarray], sid: np.ndarray, row: np.ndarray, window: int
) -> np.ndarray:
    """Copy the windows ending at bar ``row[i]`` of series ``sid[i]`` into one (n, W, C) array.

    ``channels[s]`` is series s's (bars, C) matrix. Training batches need contiguous copies of
    just their windows; copying W row blocks per series is cheaper than fancy-indexing a view.
    """
    out = np.empty((len(sid), window, channels[0].shape[1]), dtype=np.float32)
    for s in np.unique(sid):
        mask = sid == s
        start = row[mask] - (window - 1)
        if len(start) and start.min() < 0:
            raise InvalidInput(
                "row", f"series {s} has no full window of {window} before bar {start.min() + window - 1}"
            )
        for k in range(window):
            out[mask, k] = channels[s][start + k]
    return out
