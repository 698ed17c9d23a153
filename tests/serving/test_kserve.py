"""The KServe front end end to end: ``tradeloop serve --engine kserve`` on loopback, real clients.

Every server is a subprocess on free ports, called with httpx (v1, v2 REST JSON), tritonclient.http
(v2 REST, binary and JSON outputs) and tritonclient.grpc (v2 gRPC). Answers are compared with the
in-process core (``load_bundle`` + ``Predictor``/``predict``) on the same online rows. The servers
here use this module's own registry (the shared champion, registered again) so that promoting
versions does not move the champion other test modules see.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import psutil
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.grpc import service_pb2 as pb  # not kserve's: both register inference.* protos
from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceStub
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner

from services.predictor.core import Answer, Predictor, inputs_digest
from tests.serving.conftest import SERVE_SYMBOLS, ServingHome
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
from tradeloop.feature_store import OnlineReader, open_store
from tradeloop.inference import load_bundle, predict
from tradeloop.inference.online import SeriesInputs, series_inputs
from tradeloop.registry import CHAMPION, Registry

MODEL = "tradeloop"
OUTPUTS = ("prob_up", "expected_return", "signal", "model_version", "as_of", "feature_age_s")
MAX_ROWS = 50  # servers here refuse larger requests (413), so the test of that stays small
GRPC_CODES = {400: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


# -- servers -------------------------------------------------------------------------------------------
@dataclass
class Server:
    process: ServerProcess
    http: str  # http://127.0.0.1:PORT
    grpc: str  # 127.0.0.1:PORT
    http_port: int
    grpc_port: int

    def stop(self) -> int | None:
        return self.process.stop()


def start_server(
    home: ServingHome, uri: str, log_dir: Path, *options: str, ready_path: str = "/v2/health/ready"
) -> Server:
    http_port, grpc_port = free_ports(2)
    command = serve_command(
        home.settings.home,
        engine="kserve",
        http_port=http_port,
        grpc_port=grpc_port,
        mlflow_uri=uri,
        options=["--max-rows", str(MAX_ROWS), *options],
    )
    url = f"http://127.0.0.1:{http_port}"
    process = ServerProcess.start(
        command, url=url, log_path=log_dir / "server.log", env={"TRADELOOP_MAX_FEATURE_AGE": None}
    )
    try:
        process.wait_http(ready_path)
    except Exception:
        process.stop()
        raise
    return Server(process, url, f"127.0.0.1:{grpc_port}", http_port, grpc_port)


@pytest.fixture(scope="module")
def registry_uri(serving_home: ServingHome, tmp_path_factory: pytest.TempPathFactory) -> str:
    """This module's registry: the shared champion's bundle registered again, as champion (v1)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('kserve-registry') / 'mlflow.db'}"
    assert register_copy(serving_home.settings, uri, serving_home.bundle_dir) == "1"
    return uri


@pytest.fixture(scope="module")
def server(serving_home, registry_uri, tmp_path_factory) -> Iterator[Server]:
    """One REST worker; feature-age check off (the bars are from 2023); fast champion polling."""
    s = start_server(
        serving_home,
        registry_uri,
        tmp_path_factory.mktemp("kserve-one"),
        "--max-feature-age",
        "0",
        "--poll-interval",
        "0.5",
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def core(serving_home: ServingHome) -> Predictor:
    """The in-process reference: the same bundle and online store, no server."""
    predictor = Predictor(lambda: OnlineReader(open_store(serving_home.settings)), max_age=0)
    predictor.swap(load_bundle(serving_home.bundle_dir, version="reference"))
    return predictor


@pytest.fixture(scope="module")
def online(serving_home: ServingHome) -> SeriesInputs:
    """The online rows of the served series (what the server reads for them)."""
    rows = OnlineReader(open_store(serving_home.settings)).read([f"{s}:1h" for s in SERVE_SYMBOLS])
    return series_inputs(rows, max_age=0)


# -- clients -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class T:
    """One input tensor to send: data as an array, and the shape to declare (default: its own)."""

    name: str
    datatype: str
    data: np.ndarray
    shape: list[int] | None = None

    @property
    def declared(self) -> list[int]:
        return list(self.data.shape) if self.shape is None else list(self.shape)


def series_tensors(symbols: list[str], timeframes: list[str] | None = None) -> list[T]:
    timeframes = timeframes or ["1h"] * len(symbols)
    return [
        T("symbol", "BYTES", np.array([s.encode() for s in symbols], dtype=object)),
        T("timeframe", "BYTES", np.array([t.encode() for t in timeframes], dtype=object)),
    ]


def row_tensors(windows: np.ndarray, features: np.ndarray) -> list[T]:
    return [
        T("window", "FP32", windows.astype(np.float32)),
        T("features", "FP32", features.astype(np.float32)),
    ]


def _json_values(data: np.ndarray) -> list[Any]:
    return [v.decode() if isinstance(v, bytes) else v for v in data.reshape(-1).tolist()]


def v2_body(tensors: list[T]) -> bytes:
    inputs = [
        {"name": t.name, "datatype": t.datatype, "shape": t.declared, "data": _json_values(t.data)}
        for t in tensors
    ]
    return json.dumps({"inputs": inputs}).encode()  # NaN/Infinity literals allowed, as Python writes them


def _columns(values: dict[str, Any]) -> dict[str, list[Any]]:
    out = {}
    for name in OUTPUTS:
        column = list(np.asarray(values[name]).reshape(-1).tolist())
        out[name] = [v.decode() if isinstance(v, bytes) else v for v in column]
    return out


class Failed(Exception):
    """A call answered with an error: the HTTP status (or gRPC code name) and the message."""

    def __init__(self, code: int | str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def call_v1(server: Server, tensors: list[T]) -> dict[str, list[Any]]:
    instances = [
        {t.name: t.data[i].decode() if t.datatype == "BYTES" else t.data[i].tolist() for t in tensors}
        for i in range(len(tensors[0].data))
    ]
    response = httpx.post(
        f"{server.http}/v1/models/{MODEL}:predict", json={"instances": instances}, timeout=30
    )
    if response.status_code != 200:
        raise Failed(response.status_code, response.json()["error"])
    rows = response.json()["predictions"]
    values = {name: [r[name] for r in rows] for name in OUTPUTS}
    values["feature_age_s"] = [-1.0 if a is None else a for a in values["feature_age_s"]]
    return _columns(values)


def call_v2_json(server: Server, tensors: list[T]) -> dict[str, list[Any]]:
    response = httpx.post(
        f"{server.http}/v2/models/{MODEL}/infer",
        content=v2_body(tensors),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    body = response.json()
    if response.status_code != 200:
        raise Failed(response.status_code, body["error"])
    return _columns({o["name"]: o["data"] for o in body["outputs"]})


def _triton_inputs(module: Any, tensors: list[T]) -> list[Any]:
    inputs = []
    for t in tensors:
        tensor = module.InferInput(t.name, list(t.data.shape), t.datatype)
        tensor.set_data_from_numpy(t.data)
        tensor.set_shape(t.declared)
        inputs.append(tensor)
    return inputs


def call_triton_http(
    server: Server, tensors: list[T], *, binary_outputs: bool = True
) -> dict[str, list[Any]]:
    client = thttp.InferenceServerClient(server.http.removeprefix("http://"))
    outputs = [thttp.InferRequestedOutput(name, binary_data=binary_outputs) for name in OUTPUTS]
    try:
        result = client.infer(MODEL, _triton_inputs(thttp, tensors), outputs=outputs)
    except InferenceServerException as exc:
        raise Failed(int(exc.status()), exc.message()) from exc
    finally:
        client.close()
    return _columns({name: result.as_numpy(name) for name in OUTPUTS})


def call_grpc(server: Server, tensors: list[T]) -> dict[str, list[Any]]:
    client = tgrpc.InferenceServerClient(server.grpc)
    try:
        result = client.infer(MODEL, _triton_inputs(tgrpc, tensors))
    except InferenceServerException as exc:
        raise Failed(str(exc.status()).removeprefix("StatusCode."), exc.message() or "") from exc
    finally:
        client.close()
    return _columns({name: result.as_numpy(name) for name in OUTPUTS})


CLIENTS: dict[str, Callable[[Server, list[T]], dict[str, list[Any]]]] = {
    "v1": call_v1,
    "v2-json": call_v2_json,
    "triton-http-binary": call_triton_http,
    "triton-http-json": lambda s, t: call_triton_http(s, t, binary_outputs=False),
    "triton-grpc": call_grpc,
}


def assert_answers(got: dict[str, list[Any]], want: Answer, version: str) -> None:
    """Served outputs equal the core's, bit for bit (ages within the seconds between the calls)."""
    n = len(want.prob_up)
    np.testing.assert_array_equal(np.asarray(got["prob_up"], dtype=np.float32), want.prob_up)
    np.testing.assert_array_equal(np.asarray(got["expected_return"], dtype=np.float32), want.expected_return)
    np.testing.assert_array_equal(np.asarray(got["signal"], dtype=np.int8), want.signal)
    assert got["model_version"] == [version] * n
    assert got["as_of"] == want.as_of
    age = np.asarray(got["feature_age_s"], dtype=np.float64)
    want_age = np.where(np.isnan(want.feature_age_s), -1.0, want.feature_age_s)
    np.testing.assert_allclose(age, want_age, atol=120)  # float32 seconds, taken a moment apart


def champion(serving_home: ServingHome, uri: str) -> str:
    found = Registry(serving_home.settings, uri).alias(CHAMPION)
    assert found is not None
    return found.version


# -- answers -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("count", [1, 2])
def test_every_protocol_answers_what_the_core_computes_for_named_series(
    server, core, serving_home, registry_uri, client, count
):
    symbols = list(SERVE_SYMBOLS[:count])
    want = core.predict_series(symbols, ["1h"] * count)
    got = CLIENTS[client](server, series_tensors(symbols))
    assert_answers(got, want, champion(serving_home, registry_uri))


@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_protocol_answers_what_the_core_computes_for_caller_supplied_rows(
    server, core, online, serving_home, registry_uri, client
):
    out = predict(core.bundle, online.windows, online.features)
    n = len(out.prob_up)
    want = Answer(
        out.prob_up,
        out.expected_return,
        out.signal,
        "",
        [""] * n,
        np.full(n, np.nan, dtype=np.float32),
        [""] * n,
        [],
    )
    got = CLIENTS[client](server, row_tensors(online.windows, online.features))
    assert_answers(got, want, champion(serving_home, registry_uri))


def test_model_metadata_lists_the_real_tensors_on_rest_and_grpc(server):
    rest = httpx.get(f"{server.http}/v2/models/{MODEL}").json()
    client = tgrpc.InferenceServerClient(server.grpc)
    try:
        metadata = client.get_model_metadata(MODEL, as_json=True)
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)
    finally:
        client.close()
    for doc in (rest, metadata):
        inputs = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in doc["inputs"]}
        outputs = {t["name"]: t["datatype"] for t in doc["outputs"]}
        assert inputs == {
            "symbol": ("BYTES", [-1]),
            "timeframe": ("BYTES", [-1]),
            "window": ("FP32", [-1, -1, 7]),
            "features": ("FP32", [-1, 23]),
        }
        assert outputs == {
            "prob_up": "FP32",
            "expected_return": "FP32",
            "signal": "INT8",
            "model_version": "BYTES",
            "as_of": "BYTES",
            "feature_age_s": "FP32",
        }
    assert httpx.get(f"{server.http}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.http}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server.http}/v2/models/{MODEL}/ready").json()["ready"] is True


def champion_of(metrics: str) -> str:
    versions = [
        line.split('version="')[1].split('"')[0]
        for line in metrics.splitlines()
        if line.startswith("tradeloop_model_info{")
    ]
    assert len(versions) == 1, versions
    return versions[0]


def test_server_listens_on_the_given_host_only_and_exposes_metrics(server):
    process = psutil.Process(server.process.pid)
    sockets = getattr(process, "net_connections", process.connections)(kind="inet")  # psutil < 6: connections
    listening = {  # gRPC listens on an IPv6 socket with the v4-mapped loopback address
        (c.laddr.ip.removeprefix("::ffff:"), c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN
    }
    assert listening == {("127.0.0.1", server.http_port), ("127.0.0.1", server.grpc_port)}
    call_grpc(server, series_tensors(["BTCUSDT"]))
    text = httpx.get(f"{server.http}/metrics").text
    assert metric_value(text, "tradeloop_reloads_total", outcome="loaded") >= 1
    assert metric_value(text, "tradeloop_requests_total", route="v2/infer", protocol="grpc", code="200") >= 1
    assert metric_value(text, "tradeloop_model_info", version=champion_of(text)) == 1
    stages = ("features", "cnn", "xgb", "total")
    counts = {s: metric_value(text, "tradeloop_stage_duration_seconds_count", stage=s) for s in stages}
    sums = {s: metric_value(text, "tradeloop_stage_duration_seconds_sum", stage=s) for s in stages}
    assert len(set(counts.values())) == 1, counts  # every answered request observed in every stage
    assert counts["total"] >= 1
    assert 0 < sums["features"] + sums["cnn"] + sums["xgb"] <= sums["total"], sums  # parts of the whole
    assert min(sums.values()) > 0, sums


# -- bad input -----------------------------------------------------------------------------------------
W = np.zeros((2, 64, 7), dtype=np.float32)
F = np.zeros((2, 23), dtype=np.float32)
F[:, 22] = np.log(60.0)  # crypto, 1h: a valid metadata pair


def _bad(name: str, tensors: list[T], code: int, *words: str) -> Any:
    return pytest.param(tensors, code, words, id=name)


BAD_INPUT = [
    _bad("missing-timeframe", series_tensors(["BTCUSDT"])[:1], 400, "timeframe", "missing"),
    _bad("missing-features", row_tensors(W, F)[:1], 400, "features", "missing"),
    _bad(
        "symbol-not-bytes",
        [T("symbol", "FP32", np.ones(1, np.float32)), *series_tensors(["BTCUSDT"])[1:]],
        400,
        "symbol",
        "datatype",
    ),
    _bad(
        "window-int32",
        [T("window", "INT32", W.astype(np.int32)), row_tensors(W, F)[1]],
        400,
        "window",
        "datatype",
    ),
    _bad("window-2d", row_tensors(W.reshape(2, -1), F), 400, "window", "shape"),
    _bad("features-3d", row_tensors(W, F.reshape(2, 23, 1)), 400, "features", "shape"),
    _bad(
        "symbol-2d",
        [T("symbol", "BYTES", np.array([[b"BTCUSDT"]], dtype=object)), *series_tensors(["BTCUSDT"])[1:]],
        400,
        "symbol",
        "shape",
    ),
    _bad(
        "window-shape-vs-data",
        [T("window", "FP32", W, shape=[3, 64, 7]), row_tensors(W, F)[1]],
        400,
        "window",
        "needs",
    ),
    _bad(
        "symbol-shape-vs-data",
        [
            T("symbol", "BYTES", np.array([b"BTCUSDT"], dtype=object), shape=[2]),
            *series_tensors(["BTCUSDT", "ETHUSDT"])[1:],
        ],
        400,
        "symbol",
    ),
    _bad("window-nan", row_tensors(np.full_like(W, np.nan), F), 400, "window", "NaN"),
    _bad("features-inf", row_tensors(W, np.full_like(F, np.inf)), 400, "features", "inf"),
    _bad("unknown-series", series_tensors(["NOSUCHCOIN"]), 400, "series", "NOSUCHCOIN"),
    _bad("unknown-timeframe", series_tensors(["BTCUSDT"], ["7m"]), 400, "timeframe", "7m"),
    _bad("duplicate-name", series_tensors(["BTCUSDT"])[:1] * 2, 400, "symbol", "duplicate"),
    _bad("no-rows", series_tensors([]), 400, "symbol", "N = 0"),
    _bad("no-window-rows", row_tensors(W[:0], F[:0]), 400, "features", "N = 0"),
    _bad("too-many-rows", series_tensors(["BTCUSDT"] * (MAX_ROWS + 1)), 413, "rows", str(MAX_ROWS)),
]
V2_CLIENTS = {"v2-json": call_v2_json, "triton-http-binary": call_triton_http, "triton-grpc": call_grpc}


@pytest.mark.parametrize("client", list(V2_CLIENTS))
@pytest.mark.parametrize(("tensors", "code", "words"), BAD_INPUT)
def test_bad_input_gets_its_code_and_a_message_naming_the_field(server, client, tensors, code, words):
    with pytest.raises(Failed) as failed:
        V2_CLIENTS[client](server, tensors)
    expected = GRPC_CODES[code] if client == "triton-grpc" else code
    assert failed.value.code == expected, failed.value.message
    for word in words:
        assert word in failed.value.message
    assert "Traceback" not in failed.value.message


@pytest.mark.parametrize(
    ("body", "code", "word"),
    [
        ({"instances": []}, 400, "instances"),
        ({"instances": [{"symbol": "BTCUSDT"}]}, 400, "timeframe"),
        ({"instances": [{"symbol": 5, "timeframe": "1h"}]}, 400, "symbol"),
        ({"instances": [{"symbol": "NOSUCHCOIN", "timeframe": "1h"}]}, 400, "NOSUCHCOIN"),
        ({"instances": [{"window": [[float("nan")] * 7] * 64, "features": F[0].tolist()}]}, 400, "window"),
        ({"instances": [{"symbol": "BTCUSDT", "timeframe": "1h"}] * (MAX_ROWS + 1)}, 413, "rows"),
        ({"rows": []}, 400, "instances"),
    ],
)
def test_v1_bad_input_gets_its_code_and_names_the_field(server, body, code, word):
    response = httpx.post(
        f"{server.http}/v1/models/{MODEL}:predict",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == code
    assert word in response.json()["error"]


def test_malformed_v2_bodies_are_400_naming_the_field_not_422(server):
    cases = [
        (b"{not json", "body"),
        (b'{"inputs": 5}', "inputs"),
        (
            b'{"inputs": [{"name": "symbol", "datatype": "BYTES", "shape": "x", "data": []}]}',
            "inputs[0] (symbol).shape",
        ),
        (b'{"inputs": [{"name": "symbol", "datatype": "BYTES", "shape": [1]}]}', "inputs[0] (symbol).data"),
    ]
    for body, where in cases:
        for headers in ({"content-type": "application/json"}, {}):  # curl -d sends no JSON type
            response = httpx.post(f"{server.http}/v2/models/{MODEL}/infer", content=body, headers=headers)
            assert response.status_code == 400, (body, response.text)
            assert where in response.json()["error"], response.text


def _binary_body(header: dict[str, Any], tail: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + tail, {
        "inference-header-content-length": str(len(head)),
        "content-type": "application/octet-stream",
    }


def test_binary_body_whose_parts_disagree_with_their_shapes_is_400_naming_the_input(server):
    window = {
        "name": "window",
        "datatype": "FP32",
        "shape": [3, 64, 7],
        "parameters": {"binary_data_size": W.nbytes},
    }
    features = {
        "name": "features",
        "datatype": "FP32",
        "shape": [2, 23],
        "parameters": {"binary_data_size": F.nbytes},
    }
    body, headers = _binary_body({"inputs": [window, features]}, W.tobytes() + F.tobytes())
    response = httpx.post(f"{server.http}/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "window" in response.json()["error"]
    odd = {**features, "parameters": {"binary_data_size": F.nbytes - 1}}
    body, headers = _binary_body(
        {"inputs": [{**window, "shape": [2, 64, 7]}, odd]}, W.tobytes() + F.tobytes()[:-1]
    )
    response = httpx.post(f"{server.http}/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "features" in response.json()["error"]


# -- fuzz ----------------------------------------------------------------------------------------------
def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "none", "bool", "nan"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 1, 7, 2**40, -(2**63), 10**30])
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "str":
        return rng.choice(["", "BTCUSDT", "1h", "FP32", "BYTES", "window", "x" * 50, "\u00e9\u4e2d"])
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "nan":
        return rng.choice([float("nan"), float("inf"), float("-inf")])
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(["name", "shape", "datatype", "data", "inputs", "instances", "x"]): _random_value(
            rng, depth + 1
        )
        for _ in range(rng.randint(0, 4))
    }


def _random_tensor(rng: random.Random) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": rng.choice(["symbol", "timeframe", "window", "features", "other", "", 3]),
        "datatype": rng.choice(
            ["BYTES", "FP32", "FP64", "FP16", "INT32", "INT8", "BOOL", "UINT64", "NOPE", 1]
        ),
        "shape": rng.choice(
            [[1], [2], [0], [-1], [1, 64, 7], [2, 23], [2**31, 2**31], [], "1", [1.5], [None]]
        ),
        "data": rng.choice(
            [
                [],
                ["BTCUSDT"],
                ["BTCUSDT", "ETHUSDT"],
                [1.0],
                [0.0] * 448,
                [[1, 2], [3]],
                "abc",
                [None],
                [{"a": 1}],
                [float("nan")],
            ]
        ),
    }
    for key in rng.sample(list(tensor), rng.randint(0, 2)):
        del tensor[key]  # missing keys
    if rng.random() < 0.2:
        tensor["parameters"] = rng.choice(
            [{"binary_data_size": rng.randint(-5, 5000)}, {"x": [1]}, "p", None]
        )
    return tensor


def _random_rest(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    v2 = f"/v2/models/{MODEL}/infer"
    json_type = {"content-type": "application/json"}
    roll = rng.random()
    if roll < 0.1:
        return v2, rng.randbytes(rng.randint(0, 200)), rng.choice([json_type, {}])
    if roll < 0.2:
        return f"/v1/models/{MODEL}:predict", json.dumps(_random_value(rng)).encode(), json_type
    if roll < 0.3:
        instances = [
            {
                rng.choice(["symbol", "timeframe", "window", "features", "x"]): _random_value(rng)
                for _ in range(rng.randint(0, 3))
            }
            for _ in range(rng.randint(0, 3))
        ]
        return f"/v1/models/{MODEL}:predict", json.dumps({"instances": instances}).encode(), json_type
    if roll < 0.4:
        return v2, json.dumps(_random_value(rng)).encode(), json_type
    if roll < 0.5:  # a binary body whose JSON part may lie about its parts
        tensors = [_random_tensor(rng) for _ in range(rng.randint(0, 3))]
        head = json.dumps({"inputs": tensors}).encode()
        length = rng.choice([len(head), len(head) + rng.randint(-10, 10), 0, "x"])
        return (
            v2,
            head + rng.randbytes(rng.randint(0, 3000)),
            {"inference-header-content-length": str(length)},
        )
    if roll < 0.55:  # huge N
        n = rng.choice([MAX_ROWS + 1, 5000])
        return v2, v2_body(series_tensors(["BTCUSDT"] * n)), json_type
    body = {"inputs": [_random_tensor(rng) for _ in range(rng.randint(0, 4))]}
    if rng.random() < 0.2:
        body["outputs"] = [{"name": rng.choice(["prob_up", "nope", 5])}]
    if rng.random() < 0.2:
        body["parameters"] = {"binary_data_output": rng.choice([True, "x", 3])}
    return v2, json.dumps(body).encode(), rng.choice([json_type, {}])


def _random_grpc(rng: random.Random) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    raw = rng.random() < 0.5
    for _ in range(rng.randint(0, 3)):
        tensor = request.inputs.add()
        tensor.name = rng.choice(["symbol", "timeframe", "window", "features", "x", ""])
        tensor.datatype = rng.choice(["BYTES", "FP32", "FP64", "INT32", "INT8", "BOOL", "NOPE", ""])
        tensor.shape.extend(rng.choice([[1], [2], [0], [1, 64, 7], [2, 23], [2**40], [], [3, 3]]))
        if raw:
            request.raw_input_contents.append(rng.randbytes(rng.choice([0, 1, 3, 4, 8, 1792, 5000])))
        else:
            kind = rng.choice(["fp32", "bytes", "int"])
            if kind == "fp32":
                tensor.contents.fp32_contents.extend(
                    [rng.choice([0.0, 1.0, float("nan")]) for _ in range(rng.randint(0, 30))]
                )
            elif kind == "bytes":
                tensor.contents.bytes_contents.extend(
                    [rng.choice([b"BTCUSDT", b"1h", b"\xff\xfe", b""]) for _ in range(rng.randint(0, 3))]
                )
            else:
                tensor.contents.int_contents.extend([rng.randint(-5, 5) for _ in range(rng.randint(0, 5))])
    if rng.random() < 0.1:
        request.raw_input_contents.append(b"extra")  # more raw parts than inputs
    return request


def test_fuzzed_bodies_never_get_a_5xx(server):
    rng = random.Random(20231230)
    with httpx.Client(base_url=server.http, timeout=30) as client:
        for _ in range(300):
            path, body, headers = _random_rest(rng)
            response = client.post(path, content=body, headers=headers)
            assert response.status_code < 500, (path, body[:300], response.text[:300])
            if response.status_code >= 400:
                assert "error" in response.json()
    broken = []
    with grpc.insecure_channel(server.grpc) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for _ in range(150):
            request = _random_grpc(rng)
            try:
                stub.ModelInfer(request, timeout=30)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    broken.append((request, exc.details()))
    assert not broken, broken[:3]
    assert call_v2_json(server, series_tensors(["BTCUSDT"]))["prob_up"]  # still serving


# -- hot reload ----------------------------------------------------------------------------------------
class Load:
    """Clients sending requests continuously (REST keep-alive, REST new connections, gRPC)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.seen: dict[str, list[tuple[int | str, str]]] = {"rest": [], "rest-new": [], "grpc": []}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(kind,), daemon=True) for kind in self.seen]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, kind: str) -> None:
        tensors = series_tensors(list(SERVE_SYMBOLS))
        headers = {"content-type": "application/json"} | (
            {"connection": "close"} if kind == "rest-new" else {}
        )
        http = httpx.Client(base_url=self.server.http, timeout=30)
        grpc_client = tgrpc.InferenceServerClient(self.server.grpc) if kind == "grpc" else None
        try:
            while not self._stop.is_set():
                try:
                    if grpc_client is not None:
                        result = grpc_client.infer(MODEL, _triton_inputs(tgrpc, tensors))
                        versions = {v.decode() for v in result.as_numpy("model_version")}
                        self.seen[kind].append((200, ",".join(sorted(versions))))
                    else:
                        response = http.post(
                            f"/v2/models/{MODEL}/infer", content=v2_body(tensors), headers=headers
                        )
                        if response.status_code == 200:
                            out = {o["name"]: o["data"] for o in response.json()["outputs"]}
                            self.seen[kind].append((200, ",".join(sorted(set(out["model_version"])))))
                        else:
                            self.seen[kind].append((response.status_code, response.text[:300]))
                except (httpx.HTTPError, InferenceServerException) as exc:
                    self.seen[kind].append(("failed", f"{type(exc).__name__}: {exc}"))
                time.sleep(0.005)
        finally:
            http.close()
            if grpc_client is not None:
                grpc_client.close()

    def serving(self, version: str, last: int = 8) -> bool:
        """Every client's last ``last`` answers came from ``version``."""
        return all(len(s) >= last and all(v == (200, version) for v in s[-last:]) for s in self.seen.values())

    def answers(self) -> list[tuple[int | str, str]]:
        return [a for s in self.seen.values() for a in s]


def check_hot_reload_under_load(server: Server, serving_home: ServingHome, uri: str) -> None:
    settings, bundle = serving_home.settings, serving_home.bundle_dir
    before = champion(serving_home, uri)
    with Load(server) as load:
        wait_for(lambda: load.serving(before), timeout=30, what=f"serving v{before}")
        good = register_copy(settings, uri, bundle)
        wait_for(lambda: load.serving(good), timeout=60, what=f"serving the new good v{good}")

        refused_before = _refusals(server)
        bad = register_corrupted(settings, uri, bundle)
        wait_for(lambda: _refusals(server) > refused_before, timeout=60, what=f"v{bad} refused")
        time.sleep(2.0)  # several more polls: the corrupted champion must stay unserved
        assert load.serving(good)

        again = register_copy(settings, uri, bundle)
        wait_for(lambda: load.serving(again), timeout=60, what=f"serving the good v{again}")
    answers = load.answers()
    failures = [a for a in answers if a[0] != 200]
    assert not failures, failures[:5]
    assert {v for _, v in answers} <= {before, good, again}, "a corrupted or unknown version was served"
    assert len(answers) > 50


def _refusals(server: Server) -> float:
    # Over fresh connections: with several REST workers each scrape may land on another one.
    text = httpx.get(f"{server.http}/metrics", headers={"connection": "close"}, timeout=10).text
    return metric_value(text, "tradeloop_reloads_total", outcome="refused") or 0.0


def test_hot_reload_under_load_follows_good_versions_and_refuses_a_corrupted_one(
    server, serving_home, registry_uri
):
    check_hot_reload_under_load(server, serving_home, registry_uri)


def test_hot_reload_under_load_with_two_workers(serving_home, registry_uri, tmp_path_factory):
    two = start_server(
        serving_home,
        registry_uri,
        tmp_path_factory.mktemp("kserve-two"),
        "--max-feature-age",
        "0",
        "--poll-interval",
        "0.5",
        "--workers",
        "2",
    )
    try:
        workers = [
            p for p in psutil.Process(two.process.pid).children() if "spawn_main" in " ".join(p.cmdline())
        ]
        assert len(workers) == 2
        check_hot_reload_under_load(two, serving_home, registry_uri)
        assert all(w.is_running() for w in workers)  # each reloaded itself; none was replaced
    finally:
        assert two.stop() == 0, two.process.log_tail()


# -- readiness, staleness, the CLI, SIGTERM ------------------------------------------------------------
@dataclass
class Fresh:
    """A server started on an empty registry, with the default feature-age rule (3 bars + 120 s)."""

    server: Server
    uri: str


@pytest.fixture(scope="module")
def fresh(serving_home, tmp_path_factory) -> Iterator[Fresh]:
    # One server for the no-champion, stale-features and SIGTERM tests, in that order (file order):
    # a server start costs more than those three tests together.
    folder = tmp_path_factory.mktemp("kserve-fresh")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    server = start_server(serving_home, uri, folder, "--poll-interval", "0.5", ready_path="/v2/health/live")
    yield Fresh(server, uri)
    server.stop()


@pytest.fixture
def stale_server(fresh: Fresh, serving_home: ServingHome) -> Server:
    """The fresh server once it has a champion: its 2023 features are stale."""
    if Registry(serving_home.settings, fresh.uri).alias(CHAMPION) is None:
        register_copy(serving_home.settings, fresh.uri, serving_home.bundle_dir)
    fresh.server.process.wait_http("/v2/health/ready", timeout=60)
    return fresh.server


def test_before_any_champion_readiness_is_false_and_predictions_are_503(fresh, serving_home):
    assert Registry(serving_home.settings, fresh.uri).alias(CHAMPION) is None, "run in file order"
    empty = fresh.server
    assert httpx.get(f"{empty.http}/v2/health/ready").status_code == 503
    assert httpx.get(f"{empty.http}/v2/models/{MODEL}/ready").status_code == 503
    assert httpx.get(f"{empty.http}/v1/models/{MODEL}").status_code == 503
    client = tgrpc.InferenceServerClient(empty.grpc)
    try:
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert not client.is_model_ready(MODEL)
    finally:
        client.close()
    for call in (call_v1, call_v2_json, call_triton_http, call_grpc):
        with pytest.raises(Failed) as failed:
            call(empty, series_tensors(["BTCUSDT"]))
        assert failed.value.code in (503, "UNAVAILABLE"), failed.value
        assert "no model loaded yet" in failed.value.message  # the same words on every protocol


def test_a_first_champion_makes_the_server_ready_and_stale_features_are_503(stale_server):
    assert httpx.get(f"{stale_server.http}/v2/models/{MODEL}/ready").json()["ready"] is True
    for call in (call_v1, call_v2_json, call_triton_http, call_grpc):
        with pytest.raises(Failed) as failed:
            call(stale_server, series_tensors(["BTCUSDT"]))
        assert failed.value.code in (503, "UNAVAILABLE")
        assert "BTCUSDT:1h" in failed.value.message
        assert "old" in failed.value.message


def test_cli_predict_prints_the_answer_and_fails_cleanly_without_a_server(server, core):
    from tradeloop.cli.main import app

    runner = CliRunner()
    want = core.predict_series(["BTCUSDT"], ["1h"])
    for extra in (["--url", server.http], ["--grpc", "--grpc-url", server.grpc]):
        result = runner.invoke(app, ["--json", "predict", "BTCUSDT", "1h", *extra])
        assert result.exit_code == 0, result.output
        row = json.loads(result.stdout)
        assert np.float32(row["prob_up"]) == want.prob_up[0]
        assert row["series"] == "BTCUSDT:1h"
    result = runner.invoke(app, ["predict", "NOSUCHCOIN", "1h", "--url", server.http])
    assert result.exit_code == 2
    assert "NOSUCHCOIN" in result.output
    (dead,) = free_ports(1)
    for extra in (["--url", f"http://127.0.0.1:{dead}"], ["--grpc", "--grpc-url", f"127.0.0.1:{dead}"]):
        result = runner.invoke(app, ["predict", "BTCUSDT", "1h", "--timeout", "3", *extra])
        assert result.exit_code != 0
        assert "cannot reach" in result.output
        assert "Traceback" not in result.output


def _http_exchange_in_two_halves(port: int, body: bytes, between: Callable[[], None]) -> tuple[int, bytes]:
    """POST ``body`` to v2 infer over a raw socket: the headers, the server's ``100 Continue`` (it is
    now reading this request's body: the request is in flight), half the body, ``between()``, the rest."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = (
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        interim, data = data.split(b"\r\n\r\n", 1)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body[: len(body) // 2])
        between()
        sock.sendall(body[len(body) // 2 :])
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _content_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_sigterm_drains_an_in_flight_request_and_flushes_the_prediction_log(
    stale_server, online, serving_home
):
    # Caller-supplied rows carry no feature age, so the stale server answers them; a unique
    # perturbation makes their digests this test's own in the shared prediction log.
    rng = np.random.default_rng(int(time.time()))
    first = (online.windows + rng.normal(0, 1e-3, online.windows.shape)).astype(np.float32)
    second = (online.windows + rng.normal(0, 1e-3, online.windows.shape)).astype(np.float32)
    answered = call_v2_json(stale_server, row_tensors(first, online.features))
    assert len(answered["prob_up"]) == len(first)

    def sigterm_while_in_flight() -> None:
        stale_server.process.terminate()
        wait_for(lambda: not _accepts(stale_server.http_port), timeout=20, what="listener closed on SIGTERM")

    status, body = _http_exchange_in_two_halves(
        stale_server.http_port, v2_body(row_tensors(second, online.features)), sigterm_while_in_flight
    )
    assert status == 200, body[:300]
    outputs = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
    assert len(outputs["prob_up"]) == len(second)
    assert stale_server.process.process.wait(timeout=60) == 0, stale_server.process.log_tail()
    logged = set(read_prediction_log(serving_home.settings.home)["inputs_digest"])
    for windows in (first, second):
        assert set(inputs_digest(windows, online.features)) <= logged
