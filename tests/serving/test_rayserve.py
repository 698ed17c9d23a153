"""The Ray Serve front end, end to end: ``tradeloop serve --engine rayserve`` on loopback.

One server per module (Serve starts in ~10 s) over a private copy of the serving home and its own
MLflow registry, so hot-reload and the prediction log here touch nothing another module sees. It
is called by real clients: httpx (v1, v2 REST), tritonclient.http (JSON and binary tensors) and an
unmodified tritonclient.grpc; malformed gRPC requests are built with tritonclient's own protobufs
and sent through a plain gRPC stub. Answers are compared with the in-process inference core on
the same online rows. Every row the server answers is counted here, and after SIGTERM the
prediction log must hold exactly that many rows.
"""

from __future__ import annotations

import functools
import json
import math
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from tests.serving.conftest import ServingHome
from tests.serving.helpers import (
    ServerProcess,
    free_ports,
    metric_value,
    read_prediction_log,
    register_copy,
    register_corrupted,
    serve_command,
    wait_for,
)
from tradeloop.config import Settings

MODEL = "tradeloop"
START_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 90.0
MAX_ROWS = 100  # the module's server: 413 above 100 rows, or above 8 MiB of body
OUTPUTS = ("prob_up", "expected_return", "signal", "model_version", "as_of", "feature_age_s")


# -- the server ------------------------------------------------------------------------------------
@dataclass
class Server:
    process: ServerProcess
    grpc: str  # 127.0.0.1:PORT
    home: Path
    answered: list[int] = field(default_factory=list)  # rows of every 200 answer (list.append is atomic)

    @property
    def http(self) -> str:
        return self.process.url

    def record(self, rows: int) -> None:
        self.answered.append(rows)

    def output(self) -> str:
        return self.process.log_tail(200)

    def stop(self) -> int | None:
        return self.process.stop(timeout=STOP_TIMEOUT_S)


def _start(home: Path, uri: str, log_dir: Path, *, ready: bool, options: tuple[str, ...] = ()) -> Server:
    """Start ``tradeloop serve --engine rayserve`` on free ports and wait until it answers REST
    (ready, or only live) and gRPC; a port taken by someone else before Serve bound it is retried."""
    for _ in range(3):
        http_port, grpc_port = free_ports(2)
        command = serve_command(
            home,
            engine="rayserve",
            http_port=http_port,
            grpc_port=grpc_port,
            mlflow_uri=uri,
            options=("--poll-interval", "0.5", *options),
        )
        env = {"TRADELOOP_MAX_FEATURE_AGE": None, "RAY_ADDRESS": None, "RAY_USAGE_STATS_ENABLED": "0"}
        url, log = f"http://127.0.0.1:{http_port}", log_dir / f"rayserve-{http_port}.log"
        process = ServerProcess.start(command, url=url, log_path=log, env=env)
        server = Server(process, f"127.0.0.1:{grpc_port}", home)
        try:
            process.wait_http("/v2/health/ready" if ready else "/v2/health/live", timeout=START_TIMEOUT_S)
            wait_for(functools.partial(_grpc_live, server), timeout=30, what="gRPC ServerLive")
            return server
        except RuntimeError:  # exited: retry only when a port was taken meanwhile
            server.stop()
            if "Failed to bind" not in server.output() and "address already in use" not in server.output():
                raise
        except BaseException:  # never leave a server running behind a failed start
            server.stop()
            raise
    raise RuntimeError(f"no free ports after 3 tries:\n{server.output()}")


def _grpc_live(server: Server) -> bool:
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    client = tg.InferenceServerClient(server.grpc)
    try:
        return bool(client.is_server_live(client_timeout=2))
    except InferenceServerException:
        return False
    finally:
        client.close()


@dataclass(frozen=True)
class PrivateHome:
    settings: Settings
    uri: str
    version: str


def _private_home(serving_home: ServingHome, root: Path, *, champion: bool) -> PrivateHome:
    """A copy of the serving home's data and feature store, with its own (empty) MLflow registry."""
    settings = Settings.load(root / "home")
    for part in ("data", "feast"):
        shutil.copytree(serving_home.settings.home / part, settings.home / part)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    version = register_copy(settings, uri, serving_home.bundle_dir) if champion else ""
    return PrivateHome(settings, uri, version)


@pytest.fixture(scope="module")
def private(serving_home: ServingHome, tmp_path_factory: pytest.TempPathFactory) -> PrivateHome:
    return _private_home(serving_home, tmp_path_factory.mktemp("rayserve"), champion=True)


@pytest.fixture(scope="module")
def server(private: PrivateHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("rayserve-logs")
    srv = _start(
        private.settings.home,
        private.uri,
        logs,
        ready=True,
        options=("--max-feature-age", "0", "--max-rows", str(MAX_ROWS)),
    )
    yield srv
    srv.stop()


@dataclass(frozen=True)
class Core:
    """The in-process answer: the same bundle over the same online rows."""

    bundle: Any
    reader: Any

    def series(self, symbols: list[str], timeframes: list[str]) -> tuple[Any, Any]:
        from tradeloop.inference import predict
        from tradeloop.inference.online import series_ids, series_inputs

        inputs = series_inputs(self.reader.read(series_ids(symbols, timeframes)), max_age=0)
        return inputs, predict(self.bundle, inputs.windows, inputs.features)

    def rows(self, windows: np.ndarray, features: np.ndarray) -> Any:
        from tradeloop.inference import predict

        return predict(self.bundle, windows, features)


@pytest.fixture(scope="module")
def core(serving_home: ServingHome, private: PrivateHome) -> Core:
    from tradeloop.feature_store import OnlineReader, open_store
    from tradeloop.inference import load_bundle

    return Core(load_bundle(serving_home.bundle_dir), OnlineReader(open_store(private.settings)))


# -- clients ---------------------------------------------------------------------------------------
def _tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def _series(symbols: list[str], timeframes: list[str] | None = None) -> list[dict[str, Any]]:
    timeframes = timeframes or ["1h"] * len(symbols)
    return [
        _tensor("symbol", "BYTES", [len(symbols)], symbols),
        _tensor("timeframe", "BYTES", [len(timeframes)], timeframes),
    ]


def _rows(windows: np.ndarray, features: np.ndarray) -> list[dict[str, Any]]:
    return [
        _tensor("window", "FP32", list(windows.shape), windows.tolist()),
        _tensor("features", "FP32", list(features.shape), features.tolist()),
    ]


def _rest(server: Server, inputs: Any, route: str = "v2") -> httpx.Response:
    """POST v2 ``{"inputs": inputs}`` (or a v1 body / raw bytes as given); counts answered rows."""
    if route == "v1":
        r = httpx.post(f"{server.http}/v1/models/{MODEL}:predict", json=inputs, timeout=30)
    elif isinstance(inputs, bytes):
        r = httpx.post(f"{server.http}/v2/models/{MODEL}/infer", content=inputs, timeout=30)
    else:
        r = httpx.post(f"{server.http}/v2/models/{MODEL}/infer", json={"inputs": inputs}, timeout=30)
    if r.status_code == 200:
        doc = r.json()
        server.record(len(doc["predictions"]) if "predictions" in doc else doc["outputs"][0]["shape"][0])
    return r


def _v2_outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]) for o in response.json()["outputs"]}


def _v1_outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    rows = response.json()["predictions"]
    out = {name: np.asarray([r[name] for r in rows]) for name in OUTPUTS if name != "feature_age_s"}
    out["feature_age_s"] = np.asarray(
        [-1.0 if r["feature_age_s"] is None else r["feature_age_s"] for r in rows]
    )
    return out


def _triton_http(server: Server, tensors: list[dict[str, Any]], *, binary: bool) -> dict[str, np.ndarray]:
    import tritonclient.http as th

    client = th.InferenceServerClient(server.http.removeprefix("http://"))
    try:
        inputs = []
        for t in tensors:
            i = th.InferInput(t["name"], t["shape"], t["datatype"])
            dtype = object if t["datatype"] == "BYTES" else np.float32
            data = np.asarray(t["data"], dtype=dtype)
            i.set_data_from_numpy(data.astype(object) if dtype is object else data, binary_data=binary)
            inputs.append(i)
        outputs = [th.InferRequestedOutput(n, binary_data=binary) for n in OUTPUTS]
        result = client.infer(MODEL, inputs, outputs=outputs)
    finally:
        client.close()
    got = {n: result.as_numpy(n) for n in OUTPUTS}
    server.record(len(got["prob_up"]))
    return got


def _triton_grpc(server: Server, tensors: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(server.grpc)
    try:
        inputs = []
        for t in tensors:
            i = tg.InferInput(t["name"], t["shape"], t["datatype"])
            if t["datatype"] == "BYTES":
                i.set_data_from_numpy(np.asarray([s.encode() for s in t["data"]], dtype=object))
            else:
                i.set_data_from_numpy(np.asarray(t["data"], dtype=np.float32))
            inputs.append(i)
        result = client.infer(MODEL, inputs)
    finally:
        client.close()
    got = {n: result.as_numpy(n) for n in OUTPUTS}
    server.record(len(got["prob_up"]))
    return got


def _grpc_call(server: Server, request: Any, method: str = "ModelInfer") -> tuple[grpc.StatusCode, str, Any]:
    """A raw gRPC call with tritonclient's protobufs (any request, however malformed)."""
    from tritonclient.grpc import service_pb2_grpc

    with grpc.insecure_channel(server.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            response = getattr(stub, method)(request, timeout=30)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", None
    if method == "ModelInfer":
        server.record(next(iter(response.outputs[0].shape)))
    return grpc.StatusCode.OK, "", response


def _grpc_request(tensors: list[dict[str, Any]], *, raw: bool = False) -> Any:
    """A ModelInferRequest with typed contents (or raw contents), exactly as given."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=MODEL)
    for t in tensors:
        item = request.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        flat = list(np.asarray(t["data"], dtype=object).reshape(-1)) if t["data"] is not None else []
        if t["datatype"] == "BYTES":
            values = [v.encode() if isinstance(v, str) else bytes(v) for v in flat]
            if raw:
                request.raw_input_contents.append(b"".join(len(v).to_bytes(4, "little") + v for v in values))
            else:
                item.contents.bytes_contents.extend(values)
        elif raw:
            request.raw_input_contents.append(np.asarray(flat, dtype="<f4").tobytes())
        elif t["datatype"] == "FP32":
            item.contents.fp32_contents.extend(float(v) for v in flat)
        elif t["datatype"] == "INT32":
            item.contents.int_contents.extend(int(v) for v in flat)
    return request


def _check(got: dict[str, np.ndarray], want: Any, version: str, as_of: list[str], age_known: bool) -> None:
    np.testing.assert_allclose(np.asarray(got["prob_up"], dtype=np.float32), want.prob_up, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(got["expected_return"], dtype=np.float32), want.expected_return, rtol=1e-5, atol=1e-9
    )
    np.testing.assert_array_equal(np.asarray(got["signal"]).astype(int), want.signal.astype(int))
    text = [v.decode() if isinstance(v, bytes) else str(v) for v in got["model_version"]]
    assert text == [version] * len(want.prob_up)
    assert [v.decode() if isinstance(v, bytes) else str(v) for v in got["as_of"]] == as_of
    ages = np.asarray(got["feature_age_s"], dtype=np.float64)
    assert (ages > 0).all() if age_known else (ages == -1).all()


# -- in a process of its own: kserve's v2 protobufs and tritonclient's cannot share a process --------
_BUILD_AND_PICKLE = """
import json, pickle, sys
from services.predictor.rayserve_app import build_app
from services.predictor import grpc_predict_v2_pb2 as pb
args = {"home": sys.argv[1], "mlflow_uri": "http://mlflow:5000", "poll_s": "2", "max_feature_age": "0"}
app = build_app(args)
(config,) = app._bound_deployment.init_args
request = pb.ModelInferRequest(model_name="tradeloop", raw_input_contents=[b"x"])
again = pickle.loads(pickle.dumps(request))
alias = sys.modules["grpc_predict_v2_pb2"] is sys.modules["kserve.protocol.grpc.grpc_predict_v2_pb2"]
out = {"app": type(app).__name__, "config": repr(config), "same": again == request, "alias": alias}
print(json.dumps(out))
"""


def test_build_app_binds_the_config_and_the_shim_makes_v2_messages_picklable(tmp_path: Path) -> None:
    """The import-name shim is what lets Serve's gRPC proxy pickle requests; ``build_app`` is what a
    RayService imports. Both load kserve's protobufs, which would clash with tritonclient's here."""
    from services.predictor.service import ServiceConfig

    run = subprocess.run(
        [sys.executable, "-c", _BUILD_AND_PICKLE, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    config = ServiceConfig(
        home=tmp_path.resolve(), mlflow_uri="http://mlflow:5000", max_feature_age=0.0, poll_s=2.0
    )
    assert result == {"app": "Application", "config": repr(config), "same": True, "alias": True}


# -- answers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("symbols", [["BTCUSDT"], ["BTCUSDT", "ETHUSDT"]], ids=["1-series", "2-series"])
def test_series_answers_equal_the_core_over_every_protocol(
    server: Server, core: Core, private: PrivateHome, symbols: list[str]
) -> None:
    inputs, want = core.series(symbols, ["1h"] * len(symbols))
    as_of = [t.isoformat() for t in inputs.as_of]
    tensors = _series(symbols)
    v1 = _rest(server, {"instances": [{"symbol": s, "timeframe": "1h"} for s in symbols]}, "v1")
    assert v1.status_code == 200, v1.text
    v2 = _rest(server, tensors)
    assert v2.status_code == 200, v2.text
    answers = {
        "v1": _v1_outputs(v1),
        "v2-json": _v2_outputs(v2),
        "tritonclient.http-binary": _triton_http(server, tensors, binary=True),
        "tritonclient.http-json": _triton_http(server, tensors, binary=False),
        "tritonclient.grpc": _triton_grpc(server, tensors),
    }
    for protocol, got in answers.items():
        try:
            _check(got, want, private.version, as_of, age_known=True)
        except AssertionError as exc:
            raise AssertionError(f"{protocol}: {exc}") from exc


def test_window_and_feature_rows_equal_the_core_over_every_protocol(
    server: Server, core: Core, private: PrivateHome
) -> None:
    inputs, _ = core.series(["BTCUSDT", "ETHUSDT"], ["1h", "1h"])
    windows = inputs.windows[:, -core.bundle.window :, :] * np.float32(0.9)  # rows no series has
    features = inputs.features[::-1].copy()
    want = core.rows(windows, features)
    tensors = _rows(windows, features)
    instances = [
        {"window": w.tolist(), "features": f.tolist()} for w, f in zip(windows, features, strict=True)
    ]
    v1 = _rest(server, {"instances": instances}, "v1")
    assert v1.status_code == 200, v1.text
    v2 = _rest(server, tensors)
    assert v2.status_code == 200, v2.text
    answers = {
        "v1": _v1_outputs(v1),
        "v2-json": _v2_outputs(v2),
        "tritonclient.http-binary": _triton_http(server, tensors, binary=True),
        "tritonclient.grpc": _triton_grpc(server, tensors),
        "grpc-typed-contents": _grpc_outputs(_grpc_call(server, _grpc_request(tensors))),
    }
    for protocol, got in answers.items():
        try:
            _check(got, want, private.version, ["", ""], age_known=False)
        except AssertionError as exc:
            raise AssertionError(f"{protocol}: {exc}") from exc


def _grpc_outputs(call: tuple[grpc.StatusCode, str, Any]) -> dict[str, np.ndarray]:
    code, details, response = call
    assert code == grpc.StatusCode.OK, details
    out = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            items, offset = [], 0
            while offset < len(raw):
                size = int.from_bytes(raw[offset : offset + 4], "little")
                items.append(raw[offset + 4 : offset + 4 + size])
                offset += 4 + size
            out[tensor.name] = np.asarray(items, dtype=object)
        else:
            dtype = {"FP32": "<f4", "INT8": "i1"}[tensor.datatype]
            out[tensor.name] = np.frombuffer(raw, dtype=dtype)
    return out


def test_metadata_health_and_metrics_answer_on_rest_and_grpc(server: Server, private: PrivateHome) -> None:
    import tritonclient.grpc as tg
    import tritonclient.http as th

    from services.predictor.protocol import INPUTS
    from services.predictor.protocol import OUTPUTS as PROTOCOL_OUTPUTS

    meta = httpx.get(f"{server.http}/v2/models/{MODEL}").json()
    assert {t["name"]: t["datatype"] for t in meta["inputs"]} == INPUTS
    assert {t["name"]: t["datatype"] for t in meta["outputs"]} == PROTOCOL_OUTPUTS
    assert meta["versions"] == [private.version]
    assert httpx.get(f"{server.http}/v2/models/{MODEL}/ready").json()["ready"] is True
    assert httpx.get(f"{server.http}/v2/health/live").json() == {"live": True}
    http = th.InferenceServerClient(server.http.removeprefix("http://"))
    assert http.is_server_live()
    assert http.is_server_ready()
    assert http.is_model_ready(MODEL)
    assert [t["name"] for t in http.get_model_metadata(MODEL)["inputs"]] == list(INPUTS)
    http.close()
    rpc = tg.InferenceServerClient(server.grpc)
    assert rpc.is_server_live()
    assert rpc.is_server_ready()
    assert rpc.is_model_ready(MODEL)
    grpc_meta = rpc.get_model_metadata(MODEL)
    assert [(t.name, t.datatype) for t in grpc_meta.inputs] == list(INPUTS.items())
    assert list(grpc_meta.versions) == [private.version]
    rpc.close()
    metrics = httpx.get(f"{server.http}/metrics").text
    assert "tradeloop_requests_total{" in metrics
    assert f'tradeloop_model_info{{version="{private.version}"}} 1.0' in metrics
    missing = httpx.post(f"{server.http}/v2/models/other/infer", json={"inputs": _series(["BTCUSDT"])})
    assert missing.status_code == 404
    assert "other" in missing.json()["error"]
    nowhere = httpx.get(f"{server.http}/v3/nowhere")
    assert nowhere.status_code == 404
    assert "error" in nowhere.json()
    request = _grpc_request(_series(["BTCUSDT"]))
    request.model_name = "other"
    code, details, _ = _grpc_call(server, request)
    assert code == grpc.StatusCode.NOT_FOUND
    assert "other" in details


# -- errors ----------------------------------------------------------------------------------------
W, C, F = 64, 7, 23


def _features(n: int) -> np.ndarray:
    """Neutral indicators with real metadata (a crypto 1h series)."""
    from tradeloop.features import spec

    row = [0.0] * len(spec.FEATURE_NAMES) + list(spec.metadata_values("crypto", "1h"))
    return np.asarray([row] * n, dtype=np.float32)


def _window_rows(n: int = 1, *, w: int = W, c: int = C, value: float = 0.0) -> list[dict[str, Any]]:
    return _rows(np.full((n, w, c), value, dtype=np.float32), _features(n))


def _with(tensors: list[dict[str, Any]], index: int, **change: Any) -> list[dict[str, Any]]:
    out = [dict(t) for t in tensors]
    out[index].update(change)
    return out


_NAN_FEATURES = _with(_window_rows(), 1, data=[[math.nan, *_features(1)[0, 1:].tolist()]])
_INF_WINDOW = _with(_window_rows(), 0, data=np.full((1, W, C), np.inf).tolist())
BAD_INPUTS: dict[str, tuple[list[dict[str, Any]], int, str]] = {
    "missing-field": (_series(["BTCUSDT"])[:1], 400, "timeframe"),
    "wrong-dtype": (_with(_series(["BTCUSDT"]), 0, datatype="FP32", data=[1.0]), 400, "symbol"),
    "window-not-fp32": (
        _with(_window_rows(), 0, datatype="INT32", data=np.zeros((1, W, C), int).tolist()),
        400,
        "window",
    ),
    "wrong-shape": (
        _with(_window_rows(), 0, shape=[1, W * C], data=np.zeros((1, W * C)).tolist()),
        400,
        "window",
    ),
    "wrong-channels": (_window_rows(c=C - 2), 400, "window"),
    "shape-disagrees-with-data": (_with(_series(["BTCUSDT"]), 0, shape=[2]), 400, "symbol"),
    "nan": (_NAN_FEATURES, 400, "features"),
    "inf": (_INF_WINDOW, 400, "window"),
    "unknown-series": (_series(["NOPEUSDT"]), 400, "series"),
    "unknown-timeframe": (_series(["BTCUSDT"], ["7x"]), 400, "timeframe"),
    "duplicate-tensor": ([*_series(["BTCUSDT"]), _series(["ETHUSDT"])[0]], 400, "symbol"),
    "no-rows": (_series([]), 400, "symbol"),
    "unknown-input": ([*_series(["BTCUSDT"]), _tensor("colour", "BYTES", [1], ["red"])], 400, "colour"),
    "too-many-rows": (_series(["BTCUSDT"] * (MAX_ROWS + 1)), 413, "rows"),
}
GRPC_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_its_code_and_field_on_rest_and_grpc(server: Server, case: str) -> None:
    tensors, status, field_name = BAD_INPUTS[case]
    body = json.dumps({"inputs": tensors}).encode()  # NaN stays NaN: Python's JSON reads it back
    response = _rest(server, body)
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(f"{field_name}:"), response.json()
    for raw in (False, True):
        if raw and any(t["datatype"] not in ("BYTES", "FP32") for t in tensors):
            continue
        code, details, _ = _grpc_call(server, _grpc_request(tensors, raw=raw))
        assert code == GRPC_CODES[status], (raw, details)
        assert details.startswith(f"{field_name}:"), (raw, details)


_NO_NAME = b'{"inputs": [{"datatype": "BYTES", "shape": [1], "data": ["x"]}]}'
_NO_DATA = b'{"inputs": [{"name": "symbol", "datatype": "BYTES", "shape": [1]}]}'
_BAD_OUTPUT = json.dumps({"inputs": _series(["BTCUSDT"]), "outputs": [{"name": "x"}]}).encode()
_BEYOND = json.dumps(
    {"inputs": [{**_series(["X"])[0], "data": None, "parameters": {"binary_data_size": 40}}]}
).encode()
_LENGTH = "Inference-Header-Content-Length"
REST_ONLY: dict[str, tuple[str, bytes, dict[str, str], str]] = {
    "malformed-json": ("v2", b'{"inputs": [', {}, "body"),
    "not-an-object": ("v2", b"[1, 2]", {}, "body"),
    "inputs-not-a-list": ("v2", b'{"inputs": {"symbol": "BTCUSDT"}}', {}, "inputs"),
    "tensor-without-name": ("v2", _NO_NAME, {}, "inputs[0].name"),
    "tensor-without-data": ("v2", _NO_DATA, {}, "symbol"),
    "unknown-output": ("v2", _BAD_OUTPUT, {}, "outputs"),
    "bad-binary-header": ("v2", b'{"inputs": []}', {_LENGTH: "99"}, _LENGTH),
    "binary-size-beyond-body": ("v2", _BEYOND + b"xx", {_LENGTH: str(len(_BEYOND))}, "symbol"),
    "deeply-nested-json": ("v2", b"[" * 100_000 + b"]" * 100_000, {}, "body"),
    "v1-malformed-json": ("v1", b"{instances", {}, "body"),
    "v1-no-instances": ("v1", b'{"instances": []}', {}, "instances"),
    "v1-missing-field": ("v1", b'{"instances": [{"symbol": "BTCUSDT"}]}', {}, "timeframe"),
    "v1-mixed-fields": (
        "v1",
        b'{"instances": [{"symbol": "A", "timeframe": "1h"}, {"window": []}]}',
        {},
        "instances",
    ),
}


@pytest.mark.parametrize("case", list(REST_ONLY))
def test_malformed_rest_bodies_are_400_naming_the_field(server: Server, case: str) -> None:
    route, body, headers, field_name = REST_ONLY[case]
    path = f"/v1/models/{MODEL}:predict" if route == "v1" else f"/v2/models/{MODEL}/infer"
    response = httpx.post(server.http + path, content=body, headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field_name}:"), response.json()


def test_oversized_bodies_are_refused_as_too_large(server: Server) -> None:
    padded = b'{"inputs": []}' + b" " * (9 << 20)
    response = httpx.post(f"{server.http}/v2/models/{MODEL}/infer", content=padded, timeout=60)
    assert response.status_code == 413, response.text
    assert response.json()["error"].startswith("body:")
    big = _grpc_request(_series(["BTCUSDT"]), raw=True)
    big.raw_input_contents[0] = b"\x00" * (9 << 20)
    code, details, _ = _grpc_call(server, big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert details.startswith("body:"), details


def test_malformed_grpc_requests_are_invalid_argument_naming_the_field(server: Server) -> None:
    from tritonclient.grpc import service_pb2

    short = _grpc_request(_series(["BTCUSDT"]), raw=True)
    del short.raw_input_contents[1]
    odd = _grpc_request(_window_rows(), raw=True)
    odd.raw_input_contents[0] = odd.raw_input_contents[0][:-1]
    truncated = _grpc_request(_series(["BTCUSDT"]), raw=True)
    truncated.raw_input_contents[0] = truncated.raw_input_contents[0][:6]
    unnamed = service_pb2.ModelInferRequest(model_name=MODEL)
    unnamed.inputs.add(datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"BTCUSDT")
    negative = _grpc_request(_with(_series(["BTCUSDT"]), 0, shape=[-1]))
    bad_output = _grpc_request(_series(["BTCUSDT"]))
    bad_output.outputs.add(name="colour")
    cases = {
        "raw_input_contents": short,
        "window": odd,
        "symbol": truncated,
        "inputs[0].name": unnamed,
        "outputs": bad_output,
    }
    for field_name, request in cases.items():
        code, details, _ = _grpc_call(server, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (field_name, code, details)
        assert details.startswith(f"{field_name}:"), (field_name, details)
    code, details, _ = _grpc_call(server, negative)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith("symbol:"), details


def _mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with one random part replaced by junk."""
    junk: list[Any] = [
        None,
        -1,
        0,
        2**70,
        1e308,
        "x",
        "",
        [],
        {},
        [[[]]],
        True,
        [None],
        {"a": 1},
        "NaN",
        [-5, 2**40],
    ]
    if depth > 6 or rng.random() < 0.25:
        return rng.choice(junk)
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        mapping = dict(value)
        action = rng.random()
        if action < 0.2:
            del mapping[key]
        elif action < 0.3:
            mapping[rng.choice(["extra", "parameters", "id", "outputs"])] = rng.choice(junk)
        else:
            mapping[key] = _mutate(rng, value[key], depth + 1)
        return mapping
    if isinstance(value, list) and value:
        items = list(value)
        i = rng.randrange(len(items))
        action = rng.random()
        if action < 0.2:
            del items[i]
        elif action < 0.35:
            items.append(items[i])
        else:
            items[i] = _mutate(rng, items[i], depth + 1)
        return items
    return rng.choice(junk)


def test_fuzzed_requests_never_get_a_server_error(server: Server) -> None:
    rng = random.Random(20240601)
    seeds_v2 = [
        {"inputs": _series(["BTCUSDT", "ETHUSDT"])},
        {"inputs": _window_rows(2), "outputs": [{"name": "prob_up"}]},
        {"inputs": _series(["BTCUSDT"]), "parameters": {"binary_data_output": True}},
    ]
    seeds_v1 = [
        {"instances": [{"symbol": "BTCUSDT", "timeframe": "1h"}]},
        {"instances": [{"window": np.zeros((W, C)).tolist(), "features": _features(1)[0].tolist()}]},
    ]
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=server.http, timeout=30) as client:
        for i in range(360):
            v1 = i % 4 == 3
            doc = _mutate(rng, rng.choice(seeds_v1 if v1 else seeds_v2))
            body = json.dumps(doc, allow_nan=True).encode()
            headers = {}
            kind = rng.random()
            if kind < 0.1:
                body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
            elif kind < 0.2:
                body = body[: rng.randrange(len(body) + 1)]
            elif kind < 0.3 and not v1:
                headers["Inference-Header-Content-Length"] = rng.choice(
                    ["0", "-3", "x", str(len(body) - 3), "9" * 30]
                )
                body += bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
            path = f"/v1/models/{MODEL}:predict" if v1 else f"/v2/models/{MODEL}/infer"
            response = client.post(path, content=body, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (body[:300], headers, response.text)
            if response.status_code != 200:
                assert "error" in response.json(), response.text
            elif "binary" not in response.headers.get(
                "content-type", ""
            ) and "octet" not in response.headers.get("content-type", ""):
                doc = response.json()
                server.record(len(doc["predictions"]) if v1 else doc["outputs"][0]["shape"][0])
            else:
                head = json.loads(
                    response.content[: int(response.headers["Inference-Header-Content-Length"])]
                )
                server.record(head["outputs"][0]["shape"][0])
    assert statuses.get(400, 0) > 200, statuses
    codes: dict[str, int] = {}
    seeds = [_series(["BTCUSDT", "ETHUSDT"]), _window_rows(1)]
    for _ in range(160):
        tensors = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            t = rng.randrange(len(tensors))
            change = rng.choice(["name", "datatype", "shape", "data", "drop"])
            if change == "drop":
                tensors = tensors[:t] + tensors[t + 1 :]
                if not tensors:
                    break
            elif change == "name":
                tensors = _with(tensors, t, name=rng.choice(["", "symbol", "window", "x", "features"]))
            elif change == "datatype":
                tensors = _with(
                    tensors, t, datatype=rng.choice(["FP32", "BYTES", "INT32", "FP64", "", "UINT8"])
                )
            elif change == "shape":
                tensors = _with(
                    tensors,
                    t,
                    shape=[rng.choice([0, 1, 2, 7, 64, -1, 2**40]) for _ in range(rng.randint(0, 4))],
                )
            else:
                tensors = _with(
                    tensors,
                    t,
                    data=[rng.choice(["BTCUSDT", "1h", "", "\u00e9"]) for _ in range(rng.randint(0, 3))],
                )
        raw = rng.random() < 0.5 and all(x["datatype"] in ("BYTES", "FP32") for x in tensors)
        try:
            request = _grpc_request(tensors, raw=raw)
        except (ValueError, TypeError, OverflowError):
            continue  # not even buildable as a request
        if raw and request.raw_input_contents and rng.random() < 0.3:
            request.raw_input_contents[0] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 30)))
        code, details, _ = _grpc_call(server, request)
        codes[code.name] = codes.get(code.name, 0) + 1
        assert code in (
            grpc.StatusCode.OK,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ), (
            code,
            details,
        )
    assert codes.get("INVALID_ARGUMENT", 0) > 100, codes


# -- hot reload ------------------------------------------------------------------------------------
def _refusals(server: Server) -> float:
    text = httpx.get(f"{server.http}/metrics").text
    return metric_value(text, "tradeloop_reloads_total", outcome="refused") or 0.0


def test_hot_reload_serves_a_new_champion_without_a_failed_request_and_refuses_a_corrupted_one(
    server: Server, private: PrivateHome, serving_home: ServingHome
) -> None:
    import tritonclient.grpc as tg

    stop = threading.Event()
    seen: dict[str, list[str]] = {"rest": [], "grpc": []}  # each client's versions, in its order
    failures: list[str] = []

    def rest_client() -> None:
        with httpx.Client(base_url=server.http, timeout=30) as client:
            while not stop.is_set():
                r = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": _series(["BTCUSDT", "ETHUSDT"])})
                if r.status_code != 200:
                    failures.append(f"rest {r.status_code}: {r.text}")
                    continue
                server.record(2)
                seen["rest"].append(_v2_outputs(r)["model_version"][0])

    def grpc_client() -> None:
        client = tg.InferenceServerClient(server.grpc)
        inputs = [tg.InferInput("symbol", [1], "BYTES"), tg.InferInput("timeframe", [1], "BYTES")]
        inputs[0].set_data_from_numpy(np.asarray([b"ETHUSDT"], dtype=object))
        inputs[1].set_data_from_numpy(np.asarray([b"1h"], dtype=object))
        while not stop.is_set():
            try:
                result = client.infer(MODEL, inputs)
            except Exception as exc:
                failures.append(f"grpc {exc}")
                continue
            server.record(1)
            seen["grpc"].append(result.as_numpy("model_version")[0].decode())
        client.close()

    threads = [threading.Thread(target=rest_client), threading.Thread(target=grpc_client)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: min(map(len, seen.values())) > 5, timeout=30, what="the first answers")
        good = register_copy(private.settings, private.uri, serving_home.bundle_dir)
        wait_for(lambda: all(s[-1] == good for s in seen.values()), timeout=30, what=f"v{good} served")
        bad = register_corrupted(private.settings, private.uri, serving_home.bundle_dir)  # promoted
        wait_for(lambda: _refusals(server) >= 1, timeout=30, what=f"v{bad} refused")
        after = {k: len(s) for k, s in seen.items()}
        wait_for(lambda: all(len(s) > after[k] + 10 for k, s in seen.items()), timeout=30, what="answers")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:5]
    for client, versions in seen.items():  # old ... old, then new ... new: one atomic swap, never bad
        first_good = versions.index(good)
        assert set(versions[:first_good]) == {private.version}, client
        assert set(versions[first_good:]) == {good}, (client, bad)
    assert httpx.get(f"{server.http}/v2/models/{MODEL}").json()["versions"] == [good]


# -- shutdown (stops the module's server: keep it after every test that uses it) --------------------
def test_sigterm_stops_cleanly_and_the_prediction_log_holds_every_answered_row(
    server: Server, core: Core
) -> None:
    from services.predictor.core import inputs_digest

    windows = np.full((3, W, C), 0.01, dtype=np.float32) * np.arange(1, 4, dtype=np.float32)[:, None, None]
    features = _features(3)
    assert _rest(server, _rows(windows, features)).status_code == 200
    assert server.stop() == 0, server.output()
    assert "Traceback" not in server.output(), server.output()
    table = read_prediction_log(server.home)
    assert len(table) == sum(server.answered)
    assert set(inputs_digest(windows, features)) <= set(table["inputs_digest"])
    assert {"BTCUSDT:1h", "ETHUSDT:1h"} <= set(table["series_id"])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.http}/v2/health/live", timeout=2)


# -- no model, then stale features: 503 / UNAVAILABLE ----------------------------------------------
def test_no_model_and_stale_features_are_503_unavailable(
    serving_home: ServingHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("rayserve-empty")
    home = _private_home(serving_home, root, champion=False)  # no champion yet; default feature age
    srv = _start(home.settings.home, home.uri, root, ready=False)
    try:
        assert httpx.get(f"{srv.http}/v2/health/ready").status_code == 503
        for body in ({"inputs": _series(["BTCUSDT"])}, {"inputs": _window_rows()}):
            r = httpx.post(f"{srv.http}/v2/models/{MODEL}/infer", json=body)
            assert r.status_code == 503, r.text
            assert "no model" in r.json()["error"], r.text
        code, details, _ = _grpc_call(srv, _grpc_request(_series(["BTCUSDT"])))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "no model" in details
        version = register_copy(home.settings, home.uri, serving_home.bundle_dir)
        srv.process.wait_http("/v2/health/ready", timeout=30)  # the first champion, loaded live
        stale = _rest(srv, _series(["BTCUSDT"]))
        assert stale.status_code == 503, stale.text
        assert "old" in stale.json()["error"], stale.text
        code, details, _ = _grpc_call(srv, _grpc_request(_series(["ETHUSDT"])))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "ETHUSDT:1h" in details
        rows = _rest(srv, _window_rows())  # caller-supplied rows have no age to be stale
        assert rows.status_code == 200
        assert _v2_outputs(rows)["model_version"][0] == version
    finally:
        assert srv.stop() == 0, srv.output()
