"""Serving benchmark: ``tradeloop serve`` (KServe, Ray Serve) end to end over loopback, beside each
engine's no-op floor and a naive per-request pandas + eager-torch baseline.

Usage: ``.venv/bin/python bench/serve.py [--bundle DIR] [--out bench/results/serve.json]``

Set-up (a temporary home, loopback only): the last 3,000 real hourly bars of BTCUSDT and ETHUSDT,
plus 100 replicated series (the last 400 BTCUSDT bars under the names SYM000..SYM099, crypto) for
100-series requests; features built, Feast applied and materialized into SQLite (embedded) and, in
a second home with the same data, into a throwaway redis-server. The ``fast`` preset is trained
once with Ray on the two real series (or ``--bundle DIR`` is registered instead) and made champion
in a SQLite MLflow (by the gate when it earns it, else by a recorded manual promotion).

Servers, one at a time, each a subprocess (``--max-feature-age 0``: the bars are old; ``--no-log``
except for ``kserve/redis+log``):

* ``tradeloop serve --engine kserve`` on SQLite and on Redis; ``--engine rayserve`` on SQLite;
* ``kserve/redis+log``: the Redis server as ``tradeloop serve`` runs by default, with the
  prediction log on (1-series cells), so the log's cost on the request path and beside it shows;
* the no-op floor of each engine, started by this file (``_floor kserve|rayserve``): a plain
  ``kserve.ModelServer`` with a trivial ``kserve.Model``, and a trivial Ray Serve deployment on the
  same proxy set-up (HTTP + the v2 gRPC servicer), both answering the same six output tensors with
  constants (N rows) and doing nothing else — so "floor" is the engine, "core adds" is tradeloop.

Load comes from a separate client process (``_client``): per protocol (v2 REST, v2 gRPC) and
request size (1 and 100 series): a closed loop with one request in flight (one keep-alive
``httpx.Client``, or ``tritonclient.grpc``; p50, p99, req/s); the maximum req/s with K concurrent
asyncio clients (aiohttp, ``tritonclient.grpc.aio``; K in flight); and an open loop at a fixed
offered rate (``--open-fraction`` of that maximum; latency measured from each request's scheduled
send time, so queueing is not hidden). Every loop is bounded in count and in seconds. Around each
closed loop the client reads the server's own stage histograms (``/metrics``: store read + inputs,
CNN, XGBoost, total), so "core adds" splits into in-server stages and the front end's share.

Naive baseline, timed in this process per request: read the series' bars from the bar-store
Parquet, keep the last 200, recompute every feature with pandas/numpy
(``tradeloop.features.batch.compute_features``), run the CNN in eager torch (``WindowCNN`` of the
bundle's width with the weights converted from the bundle's ONNX initializers; the max difference
to ONNX Runtime is recorded) and XGBoost ``Booster.predict`` on a ``DMatrix``.

Noise: ``--rounds R`` runs the whole plan R times, interleaved (floor, then each server, then the
floor again ...), and reports per cell the median of each figure over the rounds (the rounds' own
p50, p99 and req/s are kept beside it). ``--only`` restricts the plan to some servers (e.g.
``kserve/noop,kserve/redis``), and ``--before DIR`` adds ``kserve/redis-before``: the same server
run from another source tree (an export of an older commit), for before/after in one run.

Prints a table and writes ``bench/results/serve.json``; load average is recorded at start and end.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: its shared helpers

from redis_server import start_redis  # noqa: E402

MODEL = "tradeloop"
REAL_SYMBOLS = ("BTCUSDT", "ETHUSDT")
REAL_BARS = 3000
REPLICAS = 100
REPLICA_BARS = 400  # enough for warm-up (120) and the longest window (64), small to import fast
NAIVE_BARS = 200
TIMEFRAME = "1h"
OUTPUT_NAMES = ("prob_up", "expected_return", "signal", "model_version", "as_of", "feature_age_s")
TARGETS = {
    "kserve_redis_1_p50_over_floor_ms": 0.4,
    "kserve_redis_1_p99_ms": 3.0,
    "kserve_redis_1_max_rps": 800.0,
    "kserve_redis_100_p99_ms": 15.0,
}


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _pct(lat: list[float] | np.ndarray) -> dict[str, float | None]:
    if len(lat) == 0:
        return {"p50_ms": None, "p99_ms": None}
    a = np.asarray(lat) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def _symbols(n: int) -> list[str]:
    return ["BTCUSDT"] if n == 1 else [f"SYM{i:03d}" for i in range(n)]


def _constant_answer(n: int) -> Any:
    """N rows of constants shaped like a real answer (the no-op floor's reply)."""
    from services.predictor.core import Answer

    return Answer(
        prob_up=np.full(n, 0.5, dtype=np.float32),
        expected_return=np.zeros(n, dtype=np.float32),
        signal=np.zeros(n, dtype=np.int8),
        model_version="0",
        as_of=["2024-01-01T00:00:00+00:00"] * n,
        feature_age_s=np.zeros(n, dtype=np.float32),
        series=[""] * n,
        digests=[""] * n,
    )


# ------------------------------------------------------------------------------------------------
# the no-op floors (run as subprocesses: ``bench/serve.py _floor kserve|rayserve HTTP GRPC``)
# ------------------------------------------------------------------------------------------------
def _floor_kserve(http_port: int, grpc_port: int) -> None:
    """A plain kserve.ModelServer with a model that answers constants (no executor hop, no store)."""
    import logging

    from kserve import InferOutput, InferResponse, Model, ModelServer

    from services.predictor.protocol import encode_v2

    class NoopModel(Model):
        def __init__(self) -> None:
            super().__init__(MODEL)
            self._tensors: dict[int, Any] = {}

        def load(self) -> bool:
            self.ready = True
            return True

        async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
            n = int(payload.inputs[0].shape[0])
            tensors = self._tensors.get(n)
            if tensors is None:
                tensors = self._tensors[n] = encode_v2(_constant_answer(n))
            binary = bool(payload.from_grpc) or bool(payload.use_binary_outputs)
            outputs = []
            for t in tensors:
                out = InferOutput(t.name, t.shape, t.datatype)
                out.set_data_from_numpy(t.data, binary_data=binary)
                outputs.append(out)
            return InferResponse(
                response_id=payload.id or "noop",
                model_name=self.name,
                model_version="0",
                infer_outputs=outputs,
                from_grpc=payload.from_grpc,
                use_binary_outputs=binary,
            )

    model = NoopModel()
    model.load()
    model.enable_latency_logging = False
    server = ModelServer(
        http_port=http_port, grpc_port=grpc_port, workers=1, enable_grpc=True, enable_latency_logging=False
    )
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)  # as the product's server does
    server.start([model])


def _floor_rayserve(http_port: int, grpc_port: int) -> None:
    """A trivial Ray Serve deployment behind the same HTTP + v2 gRPC proxies as the product's."""
    import ray
    from fastapi import FastAPI
    from fastapi import Request as HTTPRequest
    from fastapi.responses import JSONResponse, Response
    from ray import serve
    from ray.serve.config import gRPCOptions

    from services.predictor import grpc_predict_v2_pb2 as pb
    from services.predictor import v2wire

    api = FastAPI()

    @serve.deployment(
        max_ongoing_requests=64, graceful_shutdown_timeout_s=30, ray_actor_options={"num_cpus": 1}
    )
    @serve.ingress(api)
    class NoopDeployment:
        def __init__(self) -> None:
            self._rest: dict[int, bytes] = {}
            self._grpc: dict[int, Any] = {}

        def _rest_body(self, n: int) -> bytes:
            if n not in self._rest:
                outputs = v2wire.Outputs(list(OUTPUT_NAMES))
                self._rest[n] = v2wire.encode_rest(_constant_answer(n), outputs)[0]
            return self._rest[n]

        @api.post("/v2/models/{name}/infer")
        async def infer(self, name: str, request: HTTPRequest) -> Response:
            n = int(json.loads(await request.body())["inputs"][0]["shape"][0])
            return Response(self._rest_body(n), media_type="application/json")

        @api.get("/v2/health/ready")
        async def ready(self) -> Response:
            return JSONResponse({"ready": True})

        async def ModelInfer(self, request: Any, grpc_context: Any = None) -> Any:
            n = int(request.inputs[0].shape[0])
            if n not in self._grpc:
                outputs = v2wire.Outputs(list(OUTPUT_NAMES), frozenset(OUTPUT_NAMES))
                self._grpc[n] = v2wire.encode_grpc(_constant_answer(n), outputs)
            return self._grpc[n]

        async def ServerLive(self, request: Any) -> Any:
            return pb.ServerLiveResponse(live=True)

        async def ServerReady(self, request: Any) -> Any:
            return pb.ServerReadyResponse(ready=True)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ray.init(address="local", num_cpus=max(cpus, 1), include_dashboard=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(
            http_options={"host": "127.0.0.1", "port": http_port},
            grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=[pb.SERVICER_FUNCTION]),
        )
        serve.run(NoopDeployment.bind(), name=MODEL, route_prefix="/")
        stop.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


# ------------------------------------------------------------------------------------------------
# the load client (run as a subprocess: ``bench/serve.py _client SPEC.json OUT.json``)
# ------------------------------------------------------------------------------------------------
class _Bad(Exception):
    pass


def _rest_body(n: int) -> bytes:
    symbols = _symbols(n)
    doc = {
        "inputs": [
            {"name": "symbol", "datatype": "BYTES", "shape": [n], "data": symbols},
            {"name": "timeframe", "datatype": "BYTES", "shape": [n], "data": [TIMEFRAME] * n},
        ]
    }
    return json.dumps(doc).encode()


def _grpc_inputs(n: int) -> list[Any]:
    import tritonclient.grpc as grpcclient

    inputs = []
    for name, values in (("symbol", _symbols(n)), ("timeframe", [TIMEFRAME] * n)):
        tensor = grpcclient.InferInput(name, [n], "BYTES")
        tensor.set_data_from_numpy(np.array([v.encode() for v in values], dtype=object))
        inputs.append(tensor)
    return inputs


def _check_rest(payload: dict[str, Any], n: int) -> None:
    got = {o["name"]: o for o in payload.get("outputs", [])}
    missing = [k for k in OUTPUT_NAMES if k not in got]
    if missing or any(list(got[k]["shape"]) != [n] for k in OUTPUT_NAMES):
        raise _Bad(f"unexpected v2 REST response: {str(payload)[:300]}")


def _check_grpc(result: Any, n: int) -> None:
    for name in OUTPUT_NAMES:
        value = result.as_numpy(name)
        if value is None or value.shape != (n,):
            raise _Bad(f"unexpected v2 gRPC output {name}: {value!r}")


def _sync_caller(protocol: str, spec: dict[str, Any], n: int) -> tuple[Any, Any, Any]:
    """(call, check, close): one keep-alive httpx client, or one tritonclient.grpc client."""
    if protocol == "rest":
        import httpx

        client = httpx.Client(base_url=spec["rest_url"], timeout=30.0)
        body, path = _rest_body(n), f"/v2/models/{MODEL}/infer"
        headers = {"content-type": "application/json"}

        def call() -> Any:
            r = client.post(path, content=body, headers=headers)
            if r.status_code != 200:
                raise _Bad(f"{r.status_code} {r.text[:200]}")
            return r

        return call, lambda: _check_rest(call().json(), n), client.close
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(spec["grpc_url"])
    inputs = _grpc_inputs(n)

    def gcall() -> Any:
        return client.infer(MODEL, inputs, client_timeout=30.0)

    return gcall, lambda: _check_grpc(gcall(), n), client.close


async def _async_caller(protocol: str, spec: dict[str, Any], n: int) -> tuple[Any, Any]:
    """(call, close) for asyncio: an aiohttp session, or tritonclient.grpc.aio.

    The load generator for max req/s and the open loop is aiohttp rather than httpx.AsyncClient:
    on 2 cores httpx's async pool could not sustain 750 req/s offered (it collapsed to ~300 with
    seconds of queueing) against a server that answers 1,000+ req/s; aiohttp held the rate.
    """
    if protocol == "rest":
        import aiohttp

        session = aiohttp.ClientSession(spec["rest_url"], connector=aiohttp.TCPConnector(limit=64))
        body, path = _rest_body(n), f"/v2/models/{MODEL}/infer"
        headers = {"content-type": "application/json"}

        async def call() -> None:
            async with session.post(path, data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise _Bad(f"{r.status}")

        return call, session.close
    import tritonclient.grpc.aio as aiogrpc

    client = aiogrpc.InferenceServerClient(spec["grpc_url"])
    inputs = _grpc_inputs(n)

    async def gcall() -> None:
        await client.infer(MODEL, inputs, client_timeout=30.0)

    return gcall, client.close


def _closed_loop(call: Any, count: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    errors, first_error = 0, None
    start = time.perf_counter()
    deadline = start + seconds
    while len(lat) + errors < count:
        t0 = time.perf_counter()
        if t0 > deadline:
            break
        try:
            call()
        except Exception as exc:  # counted and reported, never hidden
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
            continue
        lat.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    return {
        "n": len(lat),
        "errors": errors,
        "first_error": first_error,
        "seconds": elapsed,
        "rps": len(lat) / elapsed if elapsed else 0.0,
        **_pct(lat),
    }


async def _max_loop(call: Any, concurrency: int, count: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    errs: list[str] = []
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        while len(lat) + len(errs) < count:
            t0 = time.perf_counter()
            if t0 > deadline:
                return
            try:
                await call()
            except Exception as exc:
                errs.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "n": len(lat),
        "errors": len(errs),
        "first_error": errs[0] if errs else None,
        "seconds": elapsed,
        "rps": len(lat) / elapsed if elapsed else 0.0,
        **_pct(lat),
    }


async def _open_loop(call: Any, rate: float, count: int, seconds: float, drain_s: float) -> dict[str, Any]:
    """Requests sent on a fixed schedule whatever the answers; latency from the scheduled time."""
    total = max(1, min(count, int(rate * seconds)))
    lat: list[float] = []
    errs: list[str] = []
    done_at: list[float] = []

    async def one(scheduled: float) -> None:
        try:
            await call()
        except Exception as exc:
            errs.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        now = time.perf_counter()
        lat.append(now - scheduled)
        done_at.append(now)

    start = time.perf_counter() + 0.01
    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    sent_s = time.perf_counter() - start
    _, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
    span = (max(done_at) - start) if done_at else 0.0
    return {
        "offered_rps": rate,
        "sent": total,
        "send_seconds": sent_s,
        "n": len(lat),
        "errors": len(errs),
        "first_error": errs[0] if errs else None,
        "unfinished": len(pending),
        "achieved_rps": len(lat) / span if span else 0.0,
        **_pct(lat),
    }


def _stage_totals(rest_url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each tradeloop stage histogram on the server's /metrics ({} on a floor)."""
    import re

    import httpx

    try:
        text = httpx.get(f"{rest_url}/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return {}
    found: dict[str, list[float]] = {}
    pattern = r'^tradeloop_stage_duration_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$'
    for kind, stage, value in re.findall(pattern, text, re.M):
        found.setdefault(stage, [0.0, 0.0])[0 if kind == "sum" else 1] = float(value)
    return {k: (v[0], v[1]) for k, v in found.items()}


def _stage_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Mean ms per request of each in-server stage between two scrapes."""
    out = {}
    for stage, (total, count) in after.items():
        t0, c0 = before.get(stage, (0.0, 0.0))
        if count > c0:
            out[f"{stage}_ms"] = (total - t0) / (count - c0) * 1e3
    return out


def _client(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    results: dict[str, Any] = {}
    for cell in spec["cells"]:
        protocol, n = cell["protocol"], int(cell["n"])
        key = f"{protocol}/{n}"
        call, check, close = _sync_caller(protocol, spec, n)
        try:
            check()  # one real answer of the right shape, or this cell fails loudly
            _closed_loop(call, spec["warm_n"], spec["warm_s"])
            before = _stage_totals(spec["rest_url"])
            closed = _closed_loop(call, spec["closed_n"], spec["closed_s"])
            closed["server_stages"] = _stage_means(before, _stage_totals(spec["rest_url"]))
        finally:
            close()

        async def phases(protocol: str = protocol, n: int = n) -> tuple[dict[str, Any], dict[str, Any]]:
            acall, aclose = await _async_caller(protocol, spec, n)
            try:
                await _max_loop(acall, spec["concurrency"], spec["warm_n"], spec["warm_s"])
                peak = await _max_loop(acall, spec["concurrency"], spec["max_n"], spec["max_s"])
                rate = max(1.0, spec["open_fraction"] * peak["rps"])
                opened = await _open_loop(acall, rate, spec["open_n"], spec["open_s"], spec["drain_s"])
            finally:
                await aclose()
            return peak, opened

        peak, opened = asyncio.run(phases())
        results[key] = {"closed": closed, "max": peak, "open": opened}
        print(f"  {key:9} closed p50 {closed['p50_ms']:.2f} ms, max {peak['rps']:.0f} req/s", flush=True)
    Path(out_path).write_text(json.dumps(results))


# ------------------------------------------------------------------------------------------------
# servers
# ------------------------------------------------------------------------------------------------
class Server:
    """A server subprocess in its own process group, its output in a log file."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        log: Path,
        http: int,
        grpc: int,
        cwd: Path = ROOT,
    ):
        self.name, self.log_path, self.http, self.grpc = name, log, http, grpc
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 240.0) -> float:
        import httpx

        url = f"http://127.0.0.1:{self.http}/v2/health/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return time.perf_counter() - self.started
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready in {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # anything left in the group we created
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


# ------------------------------------------------------------------------------------------------
# set-up: homes, online stores, champion
# ------------------------------------------------------------------------------------------------
def _build_home(settings: Any, market: Path, work: Path) -> dict[str, float]:
    import pandas as pd

    from tradeloop.bars.importer import import_file
    from tradeloop.bars.symbols import SymbolTable
    from tradeloop.features.offline import build_series
    from tradeloop.features.recent import sync_windows

    t0 = time.perf_counter()
    for symbol in REAL_SYMBOLS:
        frame = pd.read_csv(market / f"{symbol}_{TIMEFRAME}.csv").iloc[-REAL_BARS:]
        path = work / f"{symbol}_{TIMEFRAME}.csv"
        frame.to_csv(path, index=False)
        import_file(path, settings, symbol=symbol, timeframe=TIMEFRAME)
        build_series(settings, symbol, TIMEFRAME)
    replica = pd.read_csv(market / f"BTCUSDT_{TIMEFRAME}.csv").iloc[-REPLICA_BARS:]
    replica = replica.drop(columns=[c for c in replica.columns if c.lower() in {"ticker", "symbol"}])
    path = work / "replica.csv"
    replica.to_csv(path, index=False)
    symbols = SymbolTable(settings)
    for symbol in _symbols(REPLICAS):
        symbols.ensure(symbol, asset_class="crypto")
        import_file(path, settings, symbol=symbol, timeframe=TIMEFRAME)
        build_series(settings, symbol, TIMEFRAME)
    sync_windows(settings)
    return {"import_and_features_s": time.perf_counter() - t0}


def _online(settings: Any, env: dict[str, str]) -> float:
    from tradeloop import feature_store as fs

    t0 = time.perf_counter()
    fs.apply(settings, env)
    fs.materialize(fs.open_store(settings, env), start=datetime(2000, 1, 1, tzinfo=UTC))
    return time.perf_counter() - t0


def _champion(settings: Any, uri: str, work: Path, bundle: Path | None) -> dict[str, Any]:
    from tradeloop.registry import CHAMPION, Registry

    registry = Registry(settings, uri)
    t0 = time.perf_counter()
    if bundle is None:
        from training.gate import register_and_gate
        from training.job import HEALTH_CHECK_ENV, HEALTH_CHECK_S, TrainRequest, prepare, run
        from training.presets import get_preset

        os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)
        request = TrainRequest(
            preset=get_preset("fast"), symbols=list(REAL_SYMBOLS), timeframes=[TIMEFRAME], workers=2
        )
        result = run(settings, prepare(settings, request), run_dir=work / "run", ray_dir=work / "ray")
        bundle = result.bundle_dir
        version, decision = register_and_gate(registry, bundle, result.report_dir, promote=True)
        how = "gate" if decision.promote else "manual"
        if not decision.promote:
            registry.promote(version.version, reason="serving benchmark: champion by hand", manual=True)
        number = version.version
    else:
        number = registry.register(bundle, params={"preset": "bench-reuse"}, metrics={}).version
        registry.promote(number, reason="serving benchmark: reused bundle", manual=True)
        how = "manual (--bundle)"
    assert registry.alias(CHAMPION).version == number
    return {"bundle_dir": bundle, "version": number, "promotion": how, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------
# naive baseline
# ------------------------------------------------------------------------------------------------
def _naive(settings: Any, bundle: Path, seconds: float) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort
    import torch
    import xgboost
    from onnx import numpy_helper

    from tradeloop.bars.store import BarStore
    from tradeloop.features import spec
    from tradeloop.features.batch import compute_features
    from tradeloop.inference import xgb_feature_names, xgb_inputs
    from training.cnn import WindowCNN

    manifest = json.loads((bundle / "bundle.json").read_text())
    w = int(manifest["window"])
    onnx_path = bundle / manifest["models"]["cnn"]["crypto"]
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    width = int(inits["body.0.weight"].shape[0]) if "body.0.weight" in inits else 8
    model = WindowCNN(len(spec.CHANNELS), width).eval()
    state = model.state_dict()
    converted = {
        k: torch.from_numpy(inits[k].copy())
        for k in state
        if k in inits and inits[k].shape == tuple(state[k].shape)
    }
    weights = "converted from the bundle's ONNX initializers"
    if len(converted) == len(state):
        model.load_state_dict(converted)
    else:
        weights = f"random (only {len(converted)}/{len(state)} tensors found in the ONNX file)"
    booster = xgboost.Booster()
    booster.load_model(str(bundle / manifest["models"]["xgb"]["hour"]))
    # One thread each, as the served models run: with their defaults (every core) torch and
    # XGBoost contend with each other on 2 cores (p99 40-60 ms per call), a baseline of strawmen.
    torch.set_num_threads(1)
    booster.set_param({"nthread": 1})
    names = xgb_feature_names()
    meta = np.asarray([spec.metadata_values("crypto", TIMEFRAME)], dtype=np.float32)
    store = BarStore(settings)

    def one(symbol: str) -> float:
        bars = store.read(symbol, TIMEFRAME).iloc[-NAIVE_BARS:].reset_index(drop=True)
        feats = compute_features(bars)
        window = feats[list(spec.CHANNELS)].to_numpy(dtype=np.float32)[-w:][None]
        indicators = feats[list(spec.FEATURE_NAMES)].to_numpy(dtype=np.float32)[-1:]
        with torch.no_grad():
            cnn_score = model(torch.from_numpy(window)).numpy()
        x = xgb_inputs(indicators, cnn_score, meta)
        return float(booster.predict(xgboost.DMatrix(x, feature_names=names))[0])

    # The eager CNN against the bundle's ONNX model on the same window: are these its weights?
    bars = store.read("BTCUSDT", TIMEFRAME).iloc[-NAIVE_BARS:].reset_index(drop=True)
    window = compute_features(bars)[list(spec.CHANNELS)].to_numpy(dtype=np.float32)[-w:][None]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        diff = float(
            np.abs(session.run(None, {"window": window})[0] - model(torch.from_numpy(window)).numpy()).max()
        )

    out: dict[str, Any] = {
        "bars_per_request_series": NAIVE_BARS,
        "cnn": f"eager torch WindowCNN(width={width}), weights {weights}",
        "cnn_max_abs_diff_vs_onnx": diff,
        "threads": "torch 1, XGBoost 1 (as served)",
        "xgboost": "Booster.predict(DMatrix)",
    }
    for n, reps in ((1, 2000), (REPLICAS, 30)):
        symbols = _symbols(n)
        for s in symbols[:3]:
            one(s)
        lat: list[float] = []
        deadline = time.perf_counter() + seconds
        while len(lat) < reps and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            for s in symbols:
                one(s)
            lat.append(time.perf_counter() - t0)
        out[str(n)] = {"n": len(lat), **_pct(lat)}
    return out


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def _measure(
    server: Server, cells: list[tuple[str, int]], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    spec = {
        "rest_url": f"http://127.0.0.1:{server.http}",
        "grpc_url": f"127.0.0.1:{server.grpc}",
        "cells": [{"protocol": p, "n": n} for p, n in cells],
        "warm_n": 200,
        "warm_s": 0.5,
        "closed_n": opts.closed_n,
        "closed_s": opts.seconds,
        "max_n": 10 * opts.closed_n,
        "max_s": opts.seconds,
        "concurrency": opts.concurrency,
        "open_n": 10 * opts.closed_n,
        "open_s": opts.seconds,
        "open_fraction": opts.open_fraction,
        "drain_s": 5.0,
    }
    spec_path, out_path = work / f"{server.name}.spec.json", work / f"{server.name}.out.json"
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "TRADELOOP_REDIS_URL"}
    client = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "_client", str(spec_path), str(out_path)],
        cwd=ROOT,
        env=env,
        timeout=60 + len(cells) * (4 * opts.seconds + 15),
        check=False,
    )
    if client.returncode != 0:
        raise RuntimeError(
            f"client for {server.name} failed ({client.returncode}); server log:\n{server.tail()}"
        )
    return json.loads(out_path.read_text())


def _run_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    cells: list[tuple[str, int]],
    opts: argparse.Namespace,
    work: Path,
    http: int,
    grpc: int,
    cwd: Path = ROOT,
) -> dict[str, Any]:
    print(f"{name}: starting", flush=True)
    load_before = list(os.getloadavg())
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    server = Server(slug, command, env, work / f"{slug}.log", http, grpc, cwd=cwd)
    try:
        startup = server.wait_ready()
        print(f"{name}: ready in {startup:.1f} s", flush=True)
        cells_out = _measure(server, cells, opts, work)
    finally:
        server.stop()
    return {
        "startup_s": startup,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "cells": cells_out,
    }


def _median_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's rounds as one result: per cell and loop, the median of each number over the
    rounds; each round's p50 / p99 / req/s kept under ``rounds``."""
    if len(rounds) == 1:
        return rounds[0]

    def median(values: list[Any]) -> Any:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return int(np.median(values))
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return float(np.median(values))
        if all(isinstance(v, dict) for v in values):
            keys = set().union(*values)
            return {k: median([v[k] for v in values if k in v]) for k in keys}
        return next((v for v in values if v is not None), values[0])

    cells: dict[str, Any] = {}
    for key in rounds[0]["cells"]:
        per = [r["cells"][key] for r in rounds if key in r["cells"]]
        cells[key] = median(per)
        cells[key]["rounds"] = [
            {
                loop: {k: c[loop].get(k) for k in ("p50_ms", "p99_ms", "rps", "achieved_rps") if k in c[loop]}
                for loop in ("closed", "max", "open")
            }
            for c in per
        ]
    return {
        "startup_s": float(np.median([r["startup_s"] for r in rounds])),
        "load_before": rounds[0]["load_before"],
        "load_after": rounds[-1]["load_after"],
        "rounds": len(rounds),
        "cells": cells,
    }


def _serve_cmd(home: Path, engine: str, http: int, grpc: int, uri: str, log: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tradeloop.cli.main",
        "--home",
        str(home),
        "serve",
        "--engine",
        engine,
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--mlflow-uri",
        uri,
        "--max-feature-age",
        "0",
        *([] if log else ["--no-log"]),
    ]


def _summarise(servers: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool], dict[str, Any]]:
    """Targets (KServe + Redis) and, per engine, the floor and what the core adds on top of it."""

    def cell(server: str, key: str) -> dict[str, Any] | None:
        return servers.get(server, {}).get("cells", {}).get(key)

    measured: dict[str, Any] = {}
    met: dict[str, bool] = {}

    def check(name: str, value: float, ok: bool) -> None:
        measured[name], met[name] = value, ok

    for proto in ("rest", "grpc"):
        real, floor = cell("kserve/redis", f"{proto}/1"), cell("kserve/noop", f"{proto}/1")
        big = cell("kserve/redis", f"{proto}/{REPLICAS}")
        if real and floor:
            over = real["closed"]["p50_ms"] - floor["closed"]["p50_ms"]
            check(
                f"kserve_redis_1_p50_over_floor_ms_{proto}",
                over,
                over <= TARGETS["kserve_redis_1_p50_over_floor_ms"],
            )
        if real:
            p99, rps = real["closed"]["p99_ms"], real["max"]["rps"]
            check(f"kserve_redis_1_p99_ms_{proto}", p99, p99 <= TARGETS["kserve_redis_1_p99_ms"])
            check(f"kserve_redis_1_max_rps_{proto}", rps, rps >= TARGETS["kserve_redis_1_max_rps"])
        if big:
            p99 = big["closed"]["p99_ms"]
            check(f"kserve_redis_100_p99_ms_{proto}", p99, p99 <= TARGETS["kserve_redis_100_p99_ms"])

    def overhead(server: str, floor_name: str, key: str) -> dict[str, Any] | None:
        real, floor = cell(server, key), cell(floor_name, key)
        if not (real and floor):
            return None
        return {
            "floor_p50_ms": floor["closed"]["p50_ms"],
            "floor_max_rps": floor["max"]["rps"],
            "p50_ms": real["closed"]["p50_ms"],
            "core_adds_p50_ms": real["closed"]["p50_ms"] - floor["closed"]["p50_ms"],
            "in_server_stages_ms": real["closed"].get("server_stages", {}),
        }

    ray = {p: o for p in ("rest", "grpc") if (o := overhead("rayserve/sqlite", "rayserve/noop", f"{p}/1"))}
    keys = [f"{p}/{n}" for p in ("rest", "grpc") for n in (1, REPLICAS)]
    kserve = {
        f"{store}/{key}": o
        for store in ("sqlite", "redis", "redis+log", "redis-before")
        for key in keys
        if (o := overhead(f"kserve/{store}", "kserve/noop", key))
    }
    return measured, met, {"rayserve": ray, "kserve": kserve}


def _stages_text(stages: dict[str, float]) -> str:
    if not stages:
        return "-"
    return " ".join(f"{k.removesuffix('_ms')} {v:.2f}" for k, v in stages.items())


def _print(result: dict[str, Any]) -> None:
    head = (
        f"{'server':16} {'cell':9} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>6} | "
        f"{'max req/s':>9} {'p99 ms':>7} | "
        f"{'open offered→achieved':>22} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} | in-server stages ms"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for name, server in result["servers"].items():
        for key, c in server["cells"].items():
            cl, mx, op = c["closed"], c["max"], c["open"]
            errors = cl["errors"] + mx["errors"] + op["errors"] + op["unfinished"]
            rate = f"{op['offered_rps']:.0f}→{op['achieved_rps']:.0f}"
            print(
                f"{name:16} {key:9} {cl['p50_ms']:7.2f} {cl['p99_ms']:7.2f} {cl['rps']:6.0f} | "
                f"{mx['rps']:9.0f} {mx['p99_ms']:7.2f} | {rate:>22} {op['p50_ms']:7.2f} {op['p99_ms']:7.2f} "
                f"{errors:4d} | {_stages_text(cl.get('server_stages', {}))}"
            )
    naive = result.get("naive")
    if naive:
        print(f"\nnaive baseline ({naive['cnn']}; |Δ| vs ONNX {naive['cnn_max_abs_diff_vs_onnx']:.1e}):")
        for n in ("1", str(REPLICAS)):
            v = naive[n]
            print(f"  {n:>3} series: p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms ({v['n']} requests)")
    for engine, rows in (("KServe", result["kserve_overhead"]), ("Ray Serve", result["rayserve_overhead"])):
        for key, r in rows.items():
            print(
                f"{engine} {key}: floor p50 {r['floor_p50_ms']:.2f} ms, served p50 {r['p50_ms']:.2f} ms, "
                f"core adds {r['core_adds_p50_ms']:+.2f} ms"
            )
    print("\ntargets (KServe + Redis):")
    for k, v in result["measured"].items():
        print(f"  {k:40} {v:9.2f}  {'met' if result['met'][k] else 'MISSED'}")
    print(f"load average start {result['machine']['loadavg_start']}, end {result['machine']['loadavg_end']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_floor":
        engine, http, grpc = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        (_floor_kserve if engine == "kserve" else _floor_rayserve)(http, grpc)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        _client(sys.argv[2], sys.argv[3])
        return

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--market", type=Path, default=ROOT.parent / "shared" / "data" / "market")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    parser.add_argument("--bundle", type=Path, help="register this bundle dir instead of training")
    parser.add_argument("--seconds", type=float, default=2.5, help="time bound of each loop")
    parser.add_argument("--closed-n", type=int, default=3000, help="count bound of each closed loop")
    parser.add_argument("--concurrency", type=int, default=3, help="in-flight clients for max req/s (2-4)")
    parser.add_argument("--open-fraction", type=float, default=0.7, help="open-loop rate / max req/s")
    parser.add_argument("--ray-sizes", default="1", help="request sizes for Ray Serve (e.g. 1,100)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Serve servers")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--rounds", type=int, default=1, help="run the plan this often, interleaved; medians")
    parser.add_argument("--only", default="", help="comma-separated servers to run (default: all)")
    parser.add_argument("--before", type=Path, help="also serve KServe+Redis from this source tree")
    opts = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server not found")

    from tradeloop.config import Settings

    load_start = list(os.getloadavg())
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tradeloop-bench-serve-"))
    redis, redis_url = start_redis(work)
    try:
        sql_home, redis_home = Settings.load(work / "home-sqlite"), Settings.load(work / "home-redis")
        setup = _build_home(sql_home, opts.market, work)
        setup["online_sqlite_s"] = _online(sql_home, {})
        shutil.copytree(sql_home.data_dir, redis_home.data_dir)  # same bars and offline features
        setup["online_redis_s"] = _online(redis_home, {"TRADELOOP_REDIS_URL": redis_url})
        uri = f"sqlite:///{work / 'mlflow.db'}"
        champion = _champion(sql_home, uri, work, opts.bundle)
        print(
            f"set-up: {setup}; champion v{champion['version']} ({champion['promotion']}, "
            f"{champion['seconds']:.0f} s)",
            flush=True,
        )

        base_env = {k: v for k, v in os.environ.items() if k != "TRADELOOP_REDIS_URL"}
        both = [(p, n) for p in ("rest", "grpc") for n in (1, REPLICAS)]
        ray_cells = [(p, int(n)) for p in ("rest", "grpc") for n in opts.ray_sizes.split(",")]
        plan: list[tuple[str, str, Any, dict[str, str], list[tuple[str, int]]]] = [
            ("kserve/noop", "floor", "kserve", base_env, both),
            ("kserve/sqlite", "serve", (sql_home.home, "kserve"), base_env, both),
            (
                "kserve/redis",
                "serve",
                (redis_home.home, "kserve"),
                {**base_env, "TRADELOOP_REDIS_URL": redis_url},
                both,
            ),
            (
                "kserve/redis+log",
                "serve",
                (redis_home.home, "kserve", True),
                {**base_env, "TRADELOOP_REDIS_URL": redis_url},
                [(p, 1) for p in ("rest", "grpc")],
            ),
        ]
        if not opts.no_ray:
            plan += [
                ("rayserve/noop", "floor", "rayserve", base_env, ray_cells),
                ("rayserve/sqlite", "serve", (sql_home.home, "rayserve"), base_env, ray_cells),
            ]
        if opts.before is not None:
            redis_env = {**base_env, "TRADELOOP_REDIS_URL": redis_url}
            plan.append(("kserve/redis-before", "serve", (redis_home.home, "kserve"), redis_env, both))
        if opts.only:
            wanted = {name.strip() for name in opts.only.split(",") if name.strip()}
            plan = [step for step in plan if step[0] in wanted]
        rounds: dict[str, list[dict[str, Any]]] = {}
        for round_no in range(opts.rounds):
            for name, kind, what, env, cells in plan:
                http, grpc = _free_ports(2)
                cwd = ROOT
                if kind == "floor":
                    command = [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "_floor",
                        what,
                        str(http),
                        str(grpc),
                    ]
                else:
                    command = _serve_cmd(*what[:2], http, grpc, uri, log=len(what) > 2 and what[2])
                    if name.endswith("-before"):
                        cwd = opts.before.resolve()  # `python -m tradeloop...` imports that tree
                label = f"{name} (round {round_no + 1}/{opts.rounds})" if opts.rounds > 1 else name
                result = _run_server(label, command, env, cells, opts, work, http, grpc, cwd=cwd)
                rounds.setdefault(name, []).append(result)
        servers = {name: _median_rounds(results) for name, results in rounds.items()}

        naive = None if opts.no_naive else _naive(sql_home, Path(champion["bundle_dir"]), 2 * opts.seconds)
    finally:
        redis.terminate()
        redis.wait()
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    measured, met, overheads = _summarise(servers)
    result = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": list(os.getloadavg()),
        },
        "wall_s": time.perf_counter() - began,
        "setup": {
            **setup,
            "champion_version": champion["version"],
            "promotion": champion["promotion"],
            "train_or_register_s": champion["seconds"],
            "trained": opts.bundle is None,
            "real_series": [f"{s}:{TIMEFRAME}" for s in REAL_SYMBOLS],
            "real_bars": REAL_BARS,
            "replicated_series": REPLICAS,
            "replicated_bars": REPLICA_BARS,
        },
        "load": {
            "seconds_per_loop": opts.seconds,
            "closed_max_count": opts.closed_n,
            "concurrency": opts.concurrency,
            "open_fraction_of_max": opts.open_fraction,
            "rounds": opts.rounds,
            "rounds_combined": "median of each figure over the rounds (plan run in order each round)",
            "before_tree": str(opts.before) if opts.before else None,
            "client": "separate process; REST: httpx.Client (one keep-alive client) for the closed "
            "loop, aiohttp for max req/s and the open loop; gRPC: tritonclient.grpc "
            "(closed loop) and tritonclient.grpc.aio (max, open)",
            "floor": "plain kserve.ModelServer / Ray Serve deployment answering the same six "
            "outputs with constants; no store, no model",
        },
        "servers": servers,
        "naive": naive,
        "rayserve_overhead": overheads["rayserve"],
        "kserve_overhead": overheads["kserve"],
        "targets": TARGETS,
        "measured": measured,
        "met": met,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"wrote {opts.out} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
