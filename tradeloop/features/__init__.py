"""Feature engine: one spec, a vectorised batch path and a per-bar streaming path that agree."""

from tradeloop.features.batch import compute_features, feature_matrix
from tradeloop.features.spec import CHANNELS, FEATURE_NAMES, SPEC_VERSION, WARMUP, WINDOW
from tradeloop.features.streaming import StreamingFeatures
from tradeloop.features.windows import sliding_windows, window_at

__all__ = [
    "CHANNELS",
    "FEATURE_NAMES",
    "SPEC_VERSION",
    "WARMUP",
    "WINDOW",
    "StreamingFeatures",
    "compute_features",
    "feature_matrix",
    "sliding_windows",
    "window_at",
]
