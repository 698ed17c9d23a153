"""Train/serve parity: the predictor's answer for a stored bar is what training computes for it.

The predictor reads the newest bar's features and 64-bar window from the online store (Feast,
materialized); training reads the same bar from the offline Parquet and its own per-bar channel
columns. Both must reach the same CNN score, XGBoost score, return and probability to float
tolerance, and training's own CNN scores for its XGBoost rows must be what serving computes.
"""

from __future__ import annotations

import numpy as np
import xgboost

from services.predictor.core import Predictor
from tests.serving.conftest import SERVE_SYMBOLS
from tradeloop.calibration import prob_up
from tradeloop.feature_store import OnlineReader, open_store
from tradeloop.features import spec
from tradeloop.features.windows import gather_windows
from tradeloop.inference import load_bundle, predict
from tradeloop.inference.model import onnx_session


def test_the_served_answer_for_the_newest_bar_equals_trainings_offline_computation(serving_home):
    bundle = load_bundle(serving_home.bundle_dir, version=serving_home.version)
    predictor = Predictor(lambda: OnlineReader(open_store(serving_home.settings)), max_age=0)
    predictor.swap(bundle)
    answer = predictor.predict_series(list(SERVE_SYMBOLS), ["1h"] * len(SERVE_SYMBOLS))
    data = serving_home.result.prepared.data
    root = serving_home.bundle_dir
    session = onnx_session(root / "cnn" / "crypto.onnx")
    booster = xgboost.Booster(model_file=str(root / "xgb" / "hour.ubj"))
    for i, symbol in enumerate(SERVE_SYMBOLS):
        sid = next(k for k, s in enumerate(data.series) if s.symbol == symbol)
        series = data.series[sid]
        last = len(series.ts) - 1  # the newest stored bar: no label yet, so never a training sample
        window = gather_windows([series.channels], np.array([0]), np.array([last]), bundle.window)
        cnn = session.run(None, {"window": window})[0]
        x = np.concatenate([series.indicators[last], cnn, series.metadata])[None, :].astype(np.float32)
        z = booster.predict(xgboost.DMatrix(x, feature_names=None))
        rvol = float(series.indicators[last, spec.FEATURE_NAMES.index("rvol_20")])
        expected_return = float(z[0]) * max(rvol, 1e-6) * np.sqrt(bundle.horizon)
        assert answer.as_of[i].startswith(str(np.datetime_as_string(series.ts[last], unit="s")))
        np.testing.assert_allclose(answer.expected_return[i], expected_return, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(answer.prob_up[i], prob_up(bundle.calibration, z)[0], rtol=1e-5)


def test_trainings_cnn_scores_are_what_serving_computes_for_the_same_rows(serving_home):
    result = serving_home.result
    data, layout = result.prepared.data, result.prepared.plan
    bundle = load_bundle(serving_home.bundle_dir)
    idx = np.flatnonzero(layout.xgb)[-300:]
    out = predict(bundle, data.windows(idx, spec.WINDOW), data.inputs(idx))
    np.testing.assert_allclose(out.cnn_score, result.cnn_scores[idx], rtol=1e-5, atol=1e-6)
    final = xgboost.Booster(model_file=str(serving_home.bundle_dir / "xgb" / "hour.ubj"))
    z = final.predict(xgboost.DMatrix(data.xgb_matrix(idx, result.cnn_scores[idx])))
    np.testing.assert_allclose(out.score, z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.expected_return, z * data.scale[idx], rtol=1e-5, atol=1e-9)
