"""The Ray Serve front end: KServe's routes and the v2 gRPC service over one PredictionService.

One deployment, :class:`TradeloopDeployment`. Each replica builds and starts its own
:class:`~services.predictor.service.PredictionService` (predictor, champion watcher, prediction
log, metrics) and stops it in ``__del__``, which Serve calls on graceful shutdown, so
``serve.shutdown()`` flushes the prediction log. Routes, the same as the KServe front end's:

* ``POST /v1/models/tradeloop:predict`` — v1 JSON (``instances`` → ``predictions``);
* ``POST /v2/models/tradeloop/infer`` — v2 REST, JSON or with the binary tensor data extension
  ``tritonclient.http`` uses by default (:mod:`services.predictor.v2wire`);
* ``GET /v2/models/tradeloop`` (metadata), ``/v2/models/tradeloop/ready``, ``/v2/health/live``,
  ``/v2/health/ready``, ``/v2``, ``/v1/models/tradeloop`` and ``GET /metrics`` (the replica's
  Prometheus registry);
* v2 gRPC (``inference.GRPCInferenceService``: ModelInfer, ModelMetadata, ModelReady, ServerLive,
  ServerReady, ServerMetadata) through Ray Serve's gRPC proxy, which calls the replica method of
  the same name; an unmodified ``tritonclient.grpc`` works (see
  :mod:`services.predictor.grpc_predict_v2_pb2` for the one import that makes that possible).

:func:`run_rayserve` runs it on one machine (``tradeloop serve --engine rayserve``); :func:`build_app`
is the application builder a RayService or ``serve run`` imports.

Requests are decoded, answered and encoded on a worker thread, never on the replica's event loop.
Errors keep their ``tradeloop.errors`` type until :func:`http_status` / :func:`grpc_code` map them:
REST bodies are ``{"error": "<field>: <reason>"}``; gRPC sets code and details on Serve's
``grpc_context``. Nothing the caller sends yields a 500 or a traceback.
"""

# No ``from __future__ import annotations`` here: Ray Serve rebuilds the route signatures of the
# ingress class, and FastAPI would then fail to resolve string annotations (the request type).
import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from ray import serve
from starlette.exceptions import HTTPException

from services.predictor import grpc_predict_v2_pb2 as pb
from services.predictor import v2wire
from services.predictor.core import DEFAULT_MAX_ROWS
from services.predictor.protocol import decode_v1, encode_v1
from services.predictor.service import PredictionService, ServiceConfig
from tradeloop import __version__
from tradeloop.config import Settings
from tradeloop.errors import RequestTooLarge, TradeloopError, grpc_code, http_status

__all__ = ["APP_NAME", "TradeloopDeployment", "build_app", "run_rayserve"]

log = logging.getLogger("tradeloop.predictor.rayserve")

APP_NAME = "tradeloop"  # the only Serve application: tritonclient sends no "application" metadata
MODEL = v2wire.MODEL_NAME
INFER_THREADS = 4
BODY_BYTES_PER_ROW = 64 * 1024  # generous for one JSON row: a 256-bar window and every feature


# Everything the deployment's methods use is defined above the class: Serve pickles the class by
# value when the decorators run, and a function defined below it would be missing in the replica.
class _NotServed(Exception):
    """A model name this server does not serve: 404 / NOT_FOUND (a routing miss, not bad input)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is not served here; this server serves {MODEL!r}")


def _check_model(name: str) -> None:
    if name != MODEL:
        raise _NotServed(name)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _grpc_error(context: Any, code: grpc.StatusCode, message: str) -> Any:
    """Set the status on Serve's gRPC context; the proxy sends it and the client sees only the
    status (an empty message serializes alike for every method, so one type serves them all)."""
    context.set_code(code)
    context.set_details(message)
    return pb.ModelInferResponse()


def _v1_decode(body: bytes, header_length: str | None) -> tuple[Any, None]:
    return decode_v1(v2wire.parse_json(body)), None


def _v1_encode(answer: Any, _: None) -> Response:
    return JSONResponse(encode_v1(answer))


def _v2_encode(answer: Any, outputs: v2wire.Outputs) -> Response:
    body, header_length = v2wire.encode_rest(answer, outputs)
    if header_length is None:
        return Response(body, media_type="application/json")
    headers = {v2wire.HEADER_LENGTH: str(header_length)}
    return Response(body, media_type="application/octet-stream", headers=headers)


api = FastAPI(title="tradeloop predictor", version=__version__)


@api.exception_handler(HTTPException)
async def _http_error(request: HTTPRequest, exc: HTTPException) -> JSONResponse:
    """Unknown routes and methods answer ``{"error": ...}`` too, never FastAPI's ``detail``."""
    return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")


@serve.deployment(max_ongoing_requests=64, graceful_shutdown_timeout_s=30, ray_actor_options={"num_cpus": 1})
@serve.ingress(api)
class TradeloopDeployment:
    """One replica: a started PredictionService, the REST routes and the v2 gRPC methods."""

    def __init__(self, config: ServiceConfig) -> None:
        self._stopped = True
        self.service = PredictionService(config)
        self.service.start()
        self.service.ready()  # open the online store now rather than on the first request
        self._pool = ThreadPoolExecutor(max_workers=INFER_THREADS, thread_name_prefix="tradeloop-infer")
        self._max_body = max(8 << 20, config.max_rows * BODY_BYTES_PER_ROW)
        self._stopped = False

    def __del__(self) -> None:
        """Serve's graceful-shutdown hook: stop the watcher and flush the prediction log."""
        if getattr(self, "_stopped", True):
            return
        self._stopped = True
        self.service.stop()
        self._pool.shutdown(wait=False)

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _answer(
        self, route: str, protocol: str, decode: Callable[[], Any], encode: Callable[..., Any]
    ) -> Any:
        """decode → service.infer → encode; counts failures to decode (infer counts its own)."""
        try:
            request, outputs = decode()
        except Exception as exc:
            self.service.count(route, protocol, http_status(exc))
            raise
        return encode(self.service.infer(request, route=route, protocol=protocol), outputs)

    # -- REST ------------------------------------------------------------------------------------
    async def _rest(
        self,
        route: str,
        name: str,
        request: HTTPRequest,
        decode: Callable[..., Any],
        encode: Callable[..., Any],
    ) -> Response:
        declared = request.headers.get("content-length", "")
        size = int(declared) if declared.isdigit() else 0
        body = b"" if size > self._max_body else await request.body()  # refuse an oversized body unread
        header_length = request.headers.get(v2wire.HEADER_LENGTH)
        args = (route, name, max(size, len(body)), body, header_length, decode, encode)
        return await self._off_loop(self._rest_answer, *args)

    def _rest_answer(
        self,
        route: str,
        name: str,
        size: int,
        body: bytes,
        header_length: str | None,
        decode: Callable[..., Any],
        encode: Callable[..., Any],
    ) -> Response:
        """The whole REST answer, worked out on a worker thread; errors become ``{"error": ...}``."""

        def decoded() -> Any:
            if size > self._max_body:
                raise RequestTooLarge("body", f"{size} bytes exceed this server's limit of {self._max_body}")
            return decode(body, header_length)

        try:
            _check_model(name)
            return self._answer(route, "rest", decoded, encode)
        except _NotServed as exc:
            return _error(404, str(exc))
        except TradeloopError as exc:
            return _error(http_status(exc), str(exc))
        except Exception as exc:  # a bug, not the caller's: log it, answer without a traceback
            log.exception("%s request failed", route)
            return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    @api.post("/v1/models/{name}:predict")
    async def v1_predict(self, name: str, request: HTTPRequest) -> Response:
        return await self._rest("v1/predict", name, request, _v1_decode, _v1_encode)

    @api.post("/v2/models/{name}/infer")
    @api.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(self, name: str, request: HTTPRequest, version: str = "") -> Response:
        return await self._rest("v2/infer", name, request, v2wire.decode_rest, _v2_encode)

    @api.get("/v1/models/{name}")
    async def v1_model(self, name: str) -> Response:
        if name != MODEL:
            return _error(404, str(_NotServed(name)))
        return JSONResponse({"name": MODEL, "ready": await self._off_loop(self.service.ready)})

    @api.get("/v2/models/{name}")
    @api.get("/v2/models/{name}/versions/{version}")
    async def v2_metadata(self, name: str, version: str = "") -> Response:
        if name != MODEL:
            return _error(404, str(_NotServed(name)))
        bundle = self.service.predictor.bundle
        return JSONResponse(v2wire.metadata(bundle.version if bundle else None))

    @api.get("/v2/models/{name}/ready")
    @api.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(self, name: str, version: str = "") -> Response:
        if name != MODEL:
            return _error(404, str(_NotServed(name)))
        ready = await self._off_loop(self.service.ready)
        return JSONResponse({"name": MODEL, "ready": ready}, status_code=200 if ready else 503)

    @api.get("/v2/health/live")
    async def live(self) -> Response:
        return JSONResponse({"live": True})

    @api.get("/v2/health/ready")
    async def ready(self) -> Response:
        ready = await self._off_loop(self.service.ready)
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @api.get("/v2")
    async def server_metadata(self) -> Response:
        return JSONResponse({"name": MODEL, "version": __version__, "extensions": ["binary_tensor_data"]})

    @api.get("/metrics")
    async def metrics(self) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # -- gRPC: method names are the service's; Serve passes ``grpc_context`` by keyword ----------
    async def ModelInfer(self, request: Any, grpc_context: Any) -> Any:
        return await self._off_loop(self._model_infer, request, grpc_context)

    def _model_infer(self, request: Any, context: Any) -> Any:
        def decoded() -> Any:
            size = request.ByteSize()  # Serve's gRPC proxy takes messages up to 2 GiB: the REST limit
            if size > self._max_body:
                raise RequestTooLarge("body", f"{size} bytes exceed this server's limit of {self._max_body}")
            return v2wire.decode_grpc(request)

        try:
            _check_model(request.model_name)
            return self._answer("v2/infer", "grpc", decoded, v2wire.encode_grpc)
        except _NotServed as exc:
            return _grpc_error(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except TradeloopError as exc:
            return _grpc_error(context, grpc.StatusCode[grpc_code(exc)], str(exc))
        except Exception as exc:  # a bug: log it, answer INTERNAL without a traceback
            log.exception("gRPC ModelInfer failed")
            return _grpc_error(context, grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__})")

    async def ModelMetadata(self, request: Any, grpc_context: Any) -> Any:
        if request.name != MODEL:
            return _grpc_error(grpc_context, grpc.StatusCode.NOT_FOUND, str(_NotServed(request.name)))
        bundle = self.service.predictor.bundle
        return v2wire.grpc_metadata(bundle.version if bundle else None)

    async def ModelReady(self, request: Any, grpc_context: Any) -> Any:
        if request.name != MODEL:
            return _grpc_error(grpc_context, grpc.StatusCode.NOT_FOUND, str(_NotServed(request.name)))
        return pb.ModelReadyResponse(ready=await self._off_loop(self.service.ready))

    async def ServerLive(self, request: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any) -> Any:
        return pb.ServerReadyResponse(ready=await self._off_loop(self.service.ready))

    async def ServerMetadata(self, request: Any) -> Any:
        return pb.ServerMetadataResponse(name=MODEL, version=__version__, extensions=[])


def build_app(args: dict[str, Any]) -> Any:
    """Serve application builder, for ``serve run`` and a RayService's ``serveConfigV2``::

        import_path: services.predictor.rayserve_app:build_app
        args: {home: /data/tradeloop, mlflow_uri: http://mlflow:5000, poll_s: 10}

    ``home`` defaults to ``TRADELOOP_HOME``; ``max_feature_age`` to ``TRADELOOP_MAX_FEATURE_AGE``
    (read in the replica); there the gRPC proxy needs ``grpc_servicer_functions:
    [services.predictor.grpc_predict_v2_pb2.add_GRPCInferenceServiceServicer_to_server]``.
    """
    age = args.get("max_feature_age")
    config = ServiceConfig(
        home=Settings.load(args.get("home")).home,
        mlflow_uri=args.get("mlflow_uri"),
        max_feature_age=None if age in (None, "") else float(age),
        max_rows=int(args.get("max_rows", DEFAULT_MAX_ROWS)),
        poll_s=float(args.get("poll_s", 10.0)),
        log_predictions=str(args.get("log_predictions", "true")).lower() != "false",
    )
    return TradeloopDeployment.bind(config)


# -- the process -----------------------------------------------------------------------------------
def _start_ray() -> bool:
    """Join the Ray this process runs or ``RAY_ADDRESS`` names, else start a local one sized for
    this machine; True when we started it (and so must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(include_dashboard=False)
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ray.init(address="local", num_cpus=max(cpus, 1), include_dashboard=False)
    return True


def run_rayserve(config: ServiceConfig, *, host: str, http_port: int, grpc_port: int) -> None:
    """Serve until SIGTERM or SIGINT, then shut Serve down so every replica flushes its log.

    HTTP listens on ``host:http_port``. Ray Serve 2.60's gRPC proxy always listens on all
    interfaces (``[::]:grpc_port``): it has no host option. Replicas run in other processes, so
    the home is made absolute here. Raises if Serve cannot start (a port in use, for example).
    """
    import ray
    from ray.serve.config import gRPCOptions

    config = replace(config, home=Path(config.home).expanduser().resolve())
    stop = threading.Event()
    started = _start_ray()
    # After ray.init, which installs its own SIGTERM handler (sys.exit) in the driver.
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(
            http_options={"host": host, "port": http_port},
            grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=[pb.SERVICER_FUNCTION]),
        )
        serve.run(TradeloopDeployment.bind(config), name=APP_NAME, route_prefix="/")
        log.info("serving %s on http://%s:%d and gRPC port %d", MODEL, host, http_port, grpc_port)
        stop.wait()
        log.info("stopping: shutting Ray Serve down")
    finally:
        try:
            serve.shutdown()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if started:
                ray.shutdown()
