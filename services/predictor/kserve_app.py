"""The KServe front end: a thin ``kserve.Model`` over :class:`PredictionService`, run by ``ModelServer``.

Routes (model name ``tradeloop``): v1 ``POST /v1/models/tradeloop:predict``; Open Inference Protocol
v2 over REST (``/v2/models/tradeloop/infer``, model metadata with the real tensors, model and
server readiness, liveness) and over gRPC (``ModelInfer`` and the rest of the v2 service);
``/metrics`` (Prometheus, the default registry, where :mod:`services.predictor.metrics` lives).

What this file adds to KServe 0.21, and why:

* Where a request runs: KServe runs REST, gRPC and health probes on one event-loop thread. A
  request of at most ``INLINE_MAX_ROWS`` rows (as its tensors' shapes or v1 instances say) is
  answered on that thread: all of it (one store round trip, two small model calls) costs less
  than handing it to a worker thread, which moves the request between cores and their caches
  (on 2 cores: ~1 ms more CPU per 1-series request and ~40 % fewer requests per second), and
  the GIL lets only one of them run Python at a time anyway. Larger requests, which hold the
  loop for longer, run in the loop's executor, so probes never wait behind one for long. (A
  store that stops answering blocks the loop for small requests; it also fills the executor.)
* Errors: every ``tradeloop.errors`` type is mapped by ``http_status`` / ``grpc_code`` (REST body
  ``{"error": ...}``), and so is every bad body KServe would answer its own way (FastAPI's 422, a
  binary body whose parts disagree with their shapes): :mod:`services.predictor.kserve_errors`.
* Host binding: KServe hard-codes ``0.0.0.0`` / ``[::]``; the REST config and the gRPC port here
  take the given host (``SO_REUSEPORT`` off, so a taken port fails instead of being shared).
* ``--workers N``: KServe spawns N REST processes and pickles the model into each. The model
  pickles as its :class:`ServiceConfig` only, and each REST process starts its own service (own
  champion watcher, own prediction-log writer) before it accepts connections and stops it after
  uvicorn has drained. gRPC is served by the parent process, with the parent's own service.
* SIGTERM: uvicorn and gRPC drain in-flight requests (up to the grace period); only then is each
  service stopped (watcher stopped, prediction log flushed).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import numpy as np
from cloudevents.sdk.converters.util import has_binary_headers
from grpc import aio
from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve import errors as kserve_errors
from kserve.constants.constants import (
    FASTAPI_APP_IMPORT_STRING,
    INFERENCE_CONTENT_LENGTH_HEADER,
    MAX_GRPC_MESSAGE_LENGTH,
    PredictorProtocol,
)
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
from kserve.protocol.rest.server import RESTServer
from kserve.utils.numpy_codec import to_np_dtype
from uvicorn.importer import import_from_string

from services.predictor.core import Answer
from services.predictor.kserve_errors import (
    StatusInterceptor,
    check_binary_body,
    install_handlers,
    json_request,
)
from services.predictor.protocol import OUTPUTS, Request, Tensor, decode_v1, decode_v2, encode_v1, encode_v2
from services.predictor.service import PredictionService, ServiceConfig
from tradeloop.errors import InvalidInput, ModelNotReady, TradeloopError, http_status
from tradeloop.features import spec
from tradeloop.inference import FEATURE_INPUTS

__all__ = ["MODEL_NAME", "TradeloopModel", "run_kserve"]

log = logging.getLogger("tradeloop.predictor.kserve")

MODEL_NAME = "tradeloop"
V1 = PredictorProtocol.REST_V1.value
GRACE_S = 30  # seconds uvicorn and gRPC wait for in-flight requests on SIGTERM
INLINE_MAX_ROWS = 16  # requests of at most this many rows run on the event loop (docstring)
_READY_TTL_S = 1.0  # readiness is re-checked (off the event loop) at most this often

_INPUT_TYPES = [
    {"name": "symbol", "datatype": "BYTES", "shape": [-1]},
    {"name": "timeframe", "datatype": "BYTES", "shape": [-1]},
    {"name": "window", "datatype": "FP32", "shape": [-1, -1, len(spec.CHANNELS)]},
    {"name": "features", "datatype": "FP32", "shape": [-1, len(FEATURE_INPUTS)]},
]
_OUTPUT_TYPES = [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in OUTPUTS.items()]


# -- the model ---------------------------------------------------------------------------------------
class TradeloopModel(Model):
    """``kserve.Model`` over one :class:`PredictionService` per process (see the module docstring)."""

    def __init__(self, config: ServiceConfig, name: str = MODEL_NAME) -> None:
        super().__init__(name)
        self.config = config
        self.service: PredictionService | None = None
        self._checked_at = float("-inf")

    # KServe pickles the model into each REST worker process: carry the settings, not the threads.
    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["name"])  # type: ignore[misc]

    def start(self) -> None:
        """Build this process's service and load the champion (if any); idempotent."""
        if self.service is None:
            self.service = PredictionService(self.config)
            self.service.start()
        self.ready = self.service.ready()
        self._checked_at = time.monotonic()

    def stop(self) -> None:
        """Stop the watcher and flush the prediction log; call after the servers have drained."""
        if self.service is not None:
            self.service.stop()
            self.service = None
        self.ready = False

    def load(self) -> bool:
        # KServe calls this on every request while the model is not ready; loading is the
        # watcher's job, so this only reports.
        return self.ready

    async def healthy(self) -> bool:
        """A bundle is loaded and the online store answers (checked at most every second)."""
        if time.monotonic() - self._checked_at >= _READY_TTL_S:
            service = self.service
            ready = False
            if service is not None:
                ready = await asyncio.get_running_loop().run_in_executor(None, service.ready)
            self.ready, self._checked_at = ready, time.monotonic()
        return self.ready

    def validate(self, payload: Any) -> Any:
        return payload  # decode_v1 / decode_v2 validate everything, naming the field

    def get_input_types(self) -> list[dict[str, Any]]:
        return [dict(t) for t in _INPUT_TYPES]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [dict(t) for t in _OUTPUT_TYPES]

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        infer = self._infer_v2 if isinstance(payload, InferRequest) else self._infer_v1
        if _claimed_rows(payload) <= INLINE_MAX_ROWS:
            return infer(payload)  # on the event loop: see the module docstring
        return await asyncio.get_running_loop().run_in_executor(None, infer, payload)

    # Decoding, the store read, the models and encoding all run here (loop or executor).
    def _infer_v1(self, body: Any) -> dict[str, Any]:
        return encode_v1(self._answer(functools.partial(decode_v1, body), "v1/predict", "rest"))

    def _infer_v2(self, request: InferRequest) -> InferResponse:
        protocol = "grpc" if request.from_grpc else "rest"
        answer = self._answer(functools.partial(_decode_infer_request, request), "v2/infer", protocol)
        return self._response(request, answer)

    def _answer(self, decode: Callable[[], Request], route: str, protocol: str) -> Answer:
        """Decode and answer one request; errors stay tradeloop types (mapped at the edge)."""
        service = self.service
        if service is None:
            raise ModelNotReady("the prediction service is not running")
        try:
            request = decode()
        except TradeloopError as exc:
            service.count(route, protocol, http_status(exc))
            raise
        return service.infer(request, route=route, protocol=protocol)

    def _response(self, request: InferRequest, answer: Answer) -> InferResponse:
        # tritonclient.grpc decodes only raw outputs; over REST the client picks (binary_data).
        binary = True if request.from_grpc else bool(request.use_binary_outputs)
        outputs = []
        for tensor in encode_v2(answer):
            output = InferOutput(tensor.name, tensor.shape, tensor.datatype)
            output.set_data_from_numpy(tensor.data, binary_data=binary)
            outputs.append(output)
        return InferResponse(
            response_id=request.id or uuid.uuid4().hex,  # None is a 500 in KServe's REST encoder
            model_name=self.name,
            model_version=answer.model_version,
            infer_outputs=outputs,
            from_grpc=request.from_grpc,
            use_binary_outputs=binary,
            requested_outputs=request.request_outputs,
        )


def _claimed_rows(payload: Any) -> int:
    """The rows a request claims before it is decoded: the largest first dimension of its v2
    inputs, or its number of v1 instances; anything unreadable counts as large."""
    try:
        if isinstance(payload, InferRequest):
            return max(int(i.shape[0]) for i in payload.inputs)
        return len(payload["instances"])
    except Exception:  # decoding will name the defect; it just does not run on the loop
        return sys.maxsize


def _decode_infer_request(request: InferRequest) -> Request:
    """A v2 request (REST or gRPC) as validated tensors; also checks the requested outputs."""
    for output in request.request_outputs or []:
        if output.name not in OUTPUTS:
            known = ", ".join(OUTPUTS)
            raise InvalidInput("outputs", f"unknown output {output.name!r}; this model has {known}")
    return decode_v2([_tensor(i) for i in request.inputs])


def _tensor(infer_input: InferInput) -> Tensor:
    """One input as a flat :class:`Tensor`, so decode_v2 checks shape against data and names it.

    ``InferInput.as_numpy`` reshapes, and a shape that disagrees with the data would escape as a
    ValueError (a 500); gRPC's raw contents are therefore read here as flat values.
    """
    name, datatype, shape = infer_input.name, infer_input.datatype, list(infer_input.shape)
    raw = getattr(infer_input, "_raw_data", None)  # KServe has no public accessor for raw contents
    if raw is None:
        return Tensor(name, datatype, shape, infer_input.data)
    return Tensor(name, datatype, shape, _flat_values(name, datatype, raw))


def _flat_values(name: str, datatype: str, raw: bytes) -> np.ndarray | list[Any]:
    if datatype == "BYTES":
        try:
            return _length_prefixed(raw)
        except ValueError as exc:  # a malformed length prefix: the caller's bytes, not our bug
            raise InvalidInput(name, "BYTES contents are not length-prefixed strings") from exc
    dtype = to_np_dtype(datatype)
    if dtype is None or dtype == np.object_:
        return []  # decode_v2 rejects the datatype by name before it looks at the data
    if len(raw) % np.dtype(dtype).itemsize:
        raise InvalidInput(name, f"{len(raw)} bytes of raw contents are not whole {datatype} values")
    return np.frombuffer(raw, dtype=dtype)


def _length_prefixed(raw: bytes) -> list[bytes]:
    """The elements of a raw BYTES tensor (each a 4-byte little-endian length, then its bytes), as
    ``kserve``'s ``deserialize_bytes_tensor`` reads them; ValueError where a length overruns."""
    items, offset, end = [], 0, len(raw)
    while offset < end:
        start = offset + 4
        if start > end:
            raise ValueError(f"a length prefix is cut off at byte {offset}")
        stop = start + int.from_bytes(raw[offset:start], "little")
        if stop > end:
            raise ValueError(f"an element at byte {offset} runs past the end")
        items.append(bytes(raw[start:stop]))
        offset = stop
    return items


class _DataPlane(DataPlane):
    """KServe's data plane: server readiness = every model ready; bodies read so that the model
    sees every defect it can name (see the module docstring)."""

    async def ready(self) -> bool:
        models = list(self.model_registry.get_models().values())
        return bool(models) and all([await m.healthy() for m in models])

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        # KServe's predict routes ask with the flag set and refuse a model that is not ready with a
        # bare "not ready"; let them reach the model, whose error says why (no champion yet, the
        # store is down), as gRPC requests do. Readiness routes ask without it: the real answer.
        if disable_predictor_health_check:
            if self.model_registry.get_model(model_name) is None:
                raise kserve_errors.ModelNotFound(model_name)
            return True
        return await super().model_ready(model_name)

    def decode(
        self, body: Any, headers: Any, protocol_version: str = V1, model_name: str | None = None
    ) -> tuple[Any, dict[str, Any]]:
        try:
            return super().decode(body, headers, protocol_version, model_name)
        except kserve_errors.InvalidInput as refused:
            # KServe's v1 decoder (orjson) refuses NaN/Infinity literals and integers beyond 64 bits,
            # which FastAPI's v2 decoder reads; read them alike so decode_v1 names the field.
            cloudevent = bool(headers) and has_binary_headers(headers)
            if protocol_version != V1 or not isinstance(body, bytes) or cloudevent:
                raise
            try:
                parsed = json.loads(body)
            except ValueError:
                raise refused from None
            return super().decode(parsed, headers, protocol_version, model_name)

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        if isinstance(body, bytes):
            if INFERENCE_CONTENT_LENGTH_HEADER not in headers:
                body = json_request(body)
            else:
                check_binary_body(body, headers)
        try:
            return super().decode_inference_request(body, headers, model_name)
        except (kserve_errors.InvalidInput, TradeloopError):
            raise
        except Exception as exc:  # anything else KServe trips on while reading a body is the body's
            raise InvalidInput("body", f"unreadable inference request: {type(exc).__name__}: {exc}") from exc


# -- servers -----------------------------------------------------------------------------------------
def _configure_logging() -> None:
    """tradeloop's own log lines (reloads, refusals) on stderr, in every server process."""
    root = logging.getLogger("tradeloop")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)  # two lines per request otherwise


class _RESTServer(RESTServer):
    """KServe's REST server bound to ``host``, with tradeloop's error handlers."""

    def __init__(self, *args: Any, host: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = host

    def create_application(self) -> None:
        super().create_application()
        install_handlers(import_from_string(FASTAPI_APP_IMPORT_STRING))  # the app KServe just built

    def run(self, sockets: Sequence[Any] | None = None) -> None:
        """One REST worker process (``--workers N``): its own services, stopped after draining."""
        _configure_logging()
        models = list(self.dataplane.model_registry.get_models().values())
        for model in models:
            model.start()
        try:
            super().run(sockets=list(sockets) if sockets is not None else None)
        finally:
            for model in models:
                model.stop()


class _GRPCServer(GRPCServer):
    """KServe's gRPC server bound to ``host``, with one status interceptor."""

    def __init__(self, *args: Any, host: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host = host

    async def start(self, max_workers: int) -> None:
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(StatusInterceptor(),),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
                ("grpc.so_reuseport", 0),  # a taken port is an error, not a silently shared one
            ],
        )
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        address = f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"
        self._server.add_insecure_port(address)
        log.info("gRPC listening on %s", address)
        await self._server.start()
        await self._server.wait_for_termination()


class _RESTWorkers(RESTServerMultiProcess):
    """KServe's REST worker processes running :meth:`_RESTServer.run`, with a watchdog that does not
    block the event loop.

    KServe pings each worker from the parent's event loop (which also serves gRPC) and waits up to
    5 s, synchronously; a worker still importing its modules has no thread to answer yet, so KServe
    killed and respawned workers that were merely starting. Here the ping waits in a thread, with
    time for a start-up.
    """

    PING_TIMEOUT_S = 60.0

    def __init__(self, rest: _RESTServer) -> None:
        super().__init__(
            rest.config.app,
            rest.dataplane,
            rest.model_repository_extension,
            rest.config.port,
            workers=rest.config.workers,
            grace_period=rest.config.timeout_graceful_shutdown or GRACE_S,
        )
        self._rest_server = rest

    async def keep_subprocess_alive(self, sockets: list[Any]) -> None:
        for idx, process in enumerate(self._processes):
            if self.should_exit.is_set():
                return
            if await asyncio.to_thread(process.is_alive, self.PING_TIMEOUT_S):
                continue
            if self.should_exit.is_set():
                return
            log.warning("REST worker %s is gone or hung: replacing it", process.pid)
            process.kill()
            await process.wait_for_termination()
            replacement = RESTServerProcess(sockets, self._rest_server.run)
            replacement.start()
            self._processes[idx] = replacement


class _ModelServer(ModelServer):
    """``kserve.ModelServer`` with a bind host, readiness that means ready, and an ordered stop."""

    def __init__(self, *, host: str, http_port: int, grpc_port: int, workers: int) -> None:
        super().__init__(
            http_port=http_port,
            grpc_port=grpc_port,
            workers=workers,
            enable_grpc=True,
            enable_latency_logging=False,
            grace_period=GRACE_S,
        )
        self.host = host
        self.dataplane = _DataPlane(model_registry=self.registered_models)
        self._stopping: asyncio.Task[None] | None = None
        _configure_logging()  # after KServe's own logging set-up, which resets its loggers

    def start(self, models: list[TradeloopModel]) -> None:  # type: ignore[override]
        """Serve until SIGTERM/SIGINT; then drain, and stop the models."""
        for model in models:
            model.start()  # registered even when not ready: readiness says so, requests get 503
            model.enable_latency_logging = False
            self.register_model(model)
        rest = _RESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            host=self.host,
            access_log_format=self.access_log_format,
            workers=self.workers,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        if self.workers > 1:
            self._rest_multiprocess_server = _RESTWorkers(rest)
            self.servers.append(self._rest_multiprocess_server.start())
        else:
            self._rest_server = rest
            self.servers.append(rest.start())
        self._grpc_server = _GRPCServer(
            self.grpc_port,
            self.dataplane,
            self.model_repository_extension,
            kwargs={
                "grpc_max_send_message_length": MAX_GRPC_MESSAGE_LENGTH,
                "grpc_max_receive_message_length": MAX_GRPC_MESSAGE_LENGTH,
            },
            grace_period=self.grace_period,
            host=self.host,
        )
        self.servers.append(self._grpc_server.start(self.max_threads))
        self.register_signal_handler()
        try:
            asyncio.run(self._serve())
        finally:
            for model in models:
                model.stop()

    def stop(self, sig: int) -> None:
        """Signal handler: stop accepting, let in-flight requests finish (models stop afterwards)."""

        async def shutdown() -> None:
            if self._rest_multiprocess_server is not None:
                await self._rest_multiprocess_server.stop(sig)
            if self._rest_server is not None:
                self._rest_server._server.should_exit = True  # usually set already: uvicorn saw it first
            if self._grpc_server is not None:
                await self._grpc_server.stop(sig)

        log.info("signal %s: draining in-flight requests", sig)
        self._stopping = asyncio.get_running_loop().create_task(shutdown())


def _check_bindable(option: str, host: str, port: int) -> None:
    """A port someone else holds is the caller's to fix: one line, before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InvalidInput(option, f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def run_kserve(config: ServiceConfig, *, host: str, http_port: int, grpc_port: int, workers: int) -> None:
    """Serve ``config``'s champion with KServe until SIGTERM (blocking); see the module docstring."""
    if workers < 1:
        raise InvalidInput("workers", f"must be at least 1, got {workers}")
    for option, port in (("http_port", http_port), ("grpc_port", grpc_port)):
        _check_bindable(option, host, port)
    server = _ModelServer(host=host, http_port=http_port, grpc_port=grpc_port, workers=workers)
    server.start([TradeloopModel(config)])
