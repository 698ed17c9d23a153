"""The inference core: load a verified bundle, turn rows into predictions. Plain numpy, ONNX
Runtime and XGBoost; no torch, no serving framework. Training's evaluation, the gate's re-scoring
and both predictor front ends call these same functions.
"""

from tradeloop.inference.inputs import (
    FEATURE_INPUTS,
    TF_GROUPS,
    groups_from_metadata,
    return_scale,
    xgb_feature_names,
    xgb_inputs,
)
from tradeloop.inference.model import LoadedBundle, load_bundle, onnx_scores, onnx_session
from tradeloop.inference.predict import Prediction, check_inputs, predict

__all__ = [
    "FEATURE_INPUTS",
    "TF_GROUPS",
    "LoadedBundle",
    "Prediction",
    "check_inputs",
    "groups_from_metadata",
    "load_bundle",
    "onnx_scores",
    "onnx_session",
    "predict",
    "return_scale",
    "xgb_feature_names",
    "xgb_inputs",
]
