"""The inference core's per-bundle shortcuts answer exactly what the plain computation answers.

The served champion's real models (ONNX CNN, XGBoost booster) and online rows. What is checked:
XGBoost through :mod:`tradeloop.inference.booster` equals ``Booster.inplace_predict`` bit for bit,
from one thread or several; a request mixing model groups gets exactly the plain per-group
computation's answers; a malformed calibration refuses the bundle when it is built; metric
observations in one pass equal one observation per value; a server with the prediction log
off does not compute the inputs' digests, which exist only for that log; and the KServe model
answers small requests on its event loop and large ones in the loop's executor.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from services.predictor.core import Answer, inputs_digest
from services.predictor.metrics import observe_many
from services.predictor.protocol import Request
from services.predictor.service import PredictionService, ServiceConfig
from tests.serving.conftest import SERVE_SYMBOLS, ServingHome
from tradeloop.calibration import prob_up, signal
from tradeloop.errors import BundleIntegrityError
from tradeloop.feature_store import OnlineReader, open_store
from tradeloop.features import spec
from tradeloop.inference import LoadedBundle, load_bundle, predict, xgb_inputs
from tradeloop.inference.booster import DensePredictor, dense_predictor
from tradeloop.inference.online import series_ids, series_inputs


@pytest.fixture(scope="module")
def bundle(serving_home: ServingHome) -> LoadedBundle:
    return load_bundle(serving_home.bundle_dir, version=serving_home.version)


@pytest.fixture(scope="module")
def rows(serving_home: ServingHome) -> tuple[np.ndarray, np.ndarray]:
    """(windows, features) of the served series, from the online store."""
    reader = OnlineReader(open_store(serving_home.settings))
    inputs = series_inputs(reader.read(series_ids(list(SERVE_SYMBOLS), ["1h"] * 2)), max_age=0)
    return inputs.windows, inputs.features


def _xgb_rows(booster: object, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, size=(n, booster.num_features())).astype(np.float32)  # type: ignore[attr-defined]
    x[::7, ::3] = np.nan  # missing values take the trees' default branches
    return x


def test_xgboost_fast_path_answers_bit_for_bit_what_inplace_predict_answers(bundle):
    booster = bundle.xgb["hour"]
    fast = dense_predictor(booster)
    assert isinstance(fast, DensePredictor)  # this XGBoost build is matched, not fallen back from
    for n in (1, 2, 63, 64, 65, 1000):
        x = _xgb_rows(booster, n, seed=n)
        ours, theirs = fast(x), booster.inplace_predict(x)
        assert ours.dtype == theirs.dtype
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def test_xgboost_fast_path_gives_each_thread_its_own_answers(bundle):
    booster = bundle.xgb["hour"]
    fast = dense_predictor(booster)
    inputs = [_xgb_rows(booster, 1 + 17 * i, seed=100 + i) for i in range(6)]
    want = [booster.inplace_predict(x) for x in inputs]
    failures: list[str] = []

    def work(i: int) -> None:
        for _ in range(200):
            got = fast(inputs[i])
            if not np.array_equal(got, want[i]):
                failures.append(f"thread {i}: {got[:3]} != {want[i][:3]}")
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_a_request_mixing_model_groups_gets_each_groups_plain_answer(bundle, rows):
    # The same models serve three asset classes and two timeframe groups, so every row can be
    # scored. The plain computation: each class's windows through ONNX Runtime in one batch, each
    # timeframe group's XGBoost rows through inplace_predict in one batch, then the bundle's maps.
    mixed = dataclasses.replace(
        bundle,
        cnn={c: bundle.cnn["crypto"] for c in ("crypto", "equity", "fx")},
        xgb={g: bundle.xgb["hour"] for g in ("hour", "day")},
    )
    windows, features = rows
    rng = np.random.default_rng(7)
    n, n_ind = 60, len(spec.FEATURE_NAMES)
    pick = rng.integers(0, len(features), n)
    w = (windows[pick] + rng.normal(0, 0.01, windows[pick].shape)).astype(np.float32)
    f = features[pick].copy()
    f[:, n_ind] = rng.choice([0.0, 1.0, 2.0], n)  # crypto, equity, fx
    f[:, n_ind + 1] = np.log(rng.choice([60, 240, 1440], n))  # 1h, 4h (hour group), 1d (day group)
    out = predict(mixed, w, f)

    cnn = np.empty(n, dtype=np.float32)
    for c in np.unique(f[:, n_ind]):
        rows_c = f[:, n_ind] == c
        cnn[rows_c] = bundle.cnn["crypto"].run(None, {"window": w[rows_c][:, -bundle.window :]})[0]
    x = xgb_inputs(f[:, :n_ind], cnn, f[:, n_ind:])
    score = np.empty(n, dtype=np.float32)
    for day in (False, True):
        rows_g = (f[:, n_ind + 1] > np.log(300)) == day
        score[rows_g] = bundle.xgb["hour"].inplace_predict(x[rows_g])
    scale = np.maximum(np.nan_to_num(f[:, spec.FEATURE_NAMES.index("rvol_20")].astype(np.float64)), 1e-6)
    np.testing.assert_array_equal(out.cnn_score, cnn)
    np.testing.assert_array_equal(out.score, score)
    np.testing.assert_array_equal(out.prob_up, prob_up(bundle.calibration, score))
    np.testing.assert_array_equal(out.signal, signal(bundle.band, score))
    expected = (score.astype(np.float64) * scale * np.sqrt(bundle.horizon)).astype(np.float32)
    np.testing.assert_array_equal(out.expected_return, expected)


@pytest.mark.parametrize(
    ("calibration", "band"),
    [
        ({"x": [1.0, 0.0], "y": [0.2, 0.8]}, {"threshold": 0.1}),  # knots not increasing
        ({"x": [], "y": []}, {"threshold": 0.1}),
        ({"x": [0.0, 1.0], "y": [0.2, 0.8]}, {"threshold": -1.0}),
        ({"x": [0.0, 1.0], "y": [0.2, 0.8]}, {}),
    ],
)
def test_a_malformed_calibration_or_band_refuses_the_bundle_when_it_is_built(bundle, calibration, band):
    with pytest.raises(BundleIntegrityError):
        dataclasses.replace(bundle, calibration=calibration, band=band)


def test_observing_values_in_one_pass_counts_what_one_observation_per_value_counts():
    registry = CollectorRegistry()
    buckets = (0.1, 0.5, 1.0, 5.0)
    one_by_one = Histogram("one_by_one", "x", buckets=buckets, registry=registry)
    in_one_pass = Histogram("in_one_pass", "x", buckets=buckets, registry=registry)
    values = np.array([0.0, 0.1, 0.10001, 0.5, 0.7, 1.0, 4.9, 5.0, 7.0, np.inf, -3.0, 0.3], dtype=np.float32)
    for v in values.tolist():
        one_by_one.observe(v)
    observe_many(in_one_pass, values)
    observe_many(in_one_pass, values[:1])  # one value: the plain observe
    one_by_one.observe(float(values[0]))

    def samples(name: str) -> dict[str, float]:
        return {
            s.name.removeprefix(name) + str(s.labels.get("le", "")): s.value
            for metric in registry.collect()
            if metric.name == name
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    got, want = samples("in_one_pass"), samples("one_by_one")
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


def _service(home: ServingHome, *, log: bool) -> PredictionService:
    config = ServiceConfig(
        home.settings.home, mlflow_uri=home.mlflow_uri, max_feature_age=0, log_predictions=log, poll_s=3600
    )
    service = PredictionService(config)
    service.start()
    assert service.ready()
    return service


def test_with_the_prediction_log_off_no_input_digests_are_computed(serving_home: ServingHome, rows):
    request = Request(symbols=list(SERVE_SYMBOLS), timeframes=["1h"] * len(SERVE_SYMBOLS))
    windows, features = rows
    quiet = _service(serving_home, log=False)
    try:
        assert quiet.log is None
        answer = quiet.infer(request, route="v2/infer", protocol="rest")
        assert answer.digests == []
        assert len(answer.prob_up) == len(SERVE_SYMBOLS)
        rows_answer = quiet.infer(
            Request(window=windows, features=features), route="v2/infer", protocol="rest"
        )
        assert rows_answer.digests == []
    finally:
        quiet.stop()
    logging_service = _service(serving_home, log=True)
    try:
        answer = logging_service.infer(request, route="v2/infer", protocol="rest")
        assert answer.digests == inputs_digest(windows, features)
    finally:
        logging_service.stop()


def test_the_bundle_keeps_its_calibration_as_checked_arrays(bundle: LoadedBundle, serving_home: ServingHome):
    manifest_knots = np.asarray(bundle.manifest["calibration"]["x"], dtype=np.float64)
    np.testing.assert_array_equal(bundle.maps.knots_x, manifest_knots)
    assert bundle.maps.threshold == float(bundle.manifest["band"]["threshold"])
    assert Path(bundle.root) == Path(serving_home.bundle_dir)


class _RecordingService:
    """Stands in for PredictionService: answers constants and records the thread it ran on."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def infer(self, request: Request, *, route: str, protocol: str) -> Answer:
        self.threads.append(threading.get_ident())
        n = request.rows
        return Answer(
            np.full(n, 0.5, dtype=np.float32),
            np.zeros(n, dtype=np.float32),
            np.zeros(n, dtype=np.int8),
            "7",
            ["2024-01-01T00:00:00+00:00"] * n,
            np.zeros(n, dtype=np.float32),
            [""] * n,
            [],
        )

    def count(self, route: str, protocol: str, code: int, version: str | None = None) -> None:
        pass
