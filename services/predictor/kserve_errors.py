"""Every bad KServe request as a tradeloop error: 400 / 413 / 503 naming the field, never a 500.

KServe 0.21 lets some bad requests escape before the model sees them, or maps them its own way:

* FastAPI answers 422 ``{"detail": ...}`` for a v2 body that is not an inference request, and 400
  ``{"detail": ...}`` for one that is not UTF-8;
* a binary v2 body is reshaped without checking its parts against their shapes (a bare ValueError,
  a 500), and a JSON body sent without a JSON content type is refused as "binary";
* KServe's gRPC interceptor reads a ``reason`` attribute some of its own errors lack.

This module maps all of them the one way: ``tradeloop.errors.http_status`` / ``grpc_code`` for
tradeloop's types, the matching codes for KServe's, REST bodies ``{"error": "..."}``.
:func:`install_handlers` puts the REST side on KServe's FastAPI app; :class:`StatusInterceptor`
is the gRPC side; :func:`check_binary_body` and :func:`json_request` read bodies before KServe does.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from grpc_interceptor import AsyncExceptionToStatusInterceptor
from grpc_interceptor.exceptions import GrpcException
from kserve import errors as kserve_errors
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.protocol.infer_type import deserialize_bytes_tensor
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from kserve.utils.numpy_codec import to_np_dtype
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from tradeloop.errors import InvalidInput, TradeloopError, grpc_code, http_status

__all__ = ["StatusInterceptor", "check_binary_body", "install_handlers", "json_request", "status"]

log = logging.getLogger("tradeloop.predictor.kserve")

_KSERVE_ERRORS: tuple[tuple[type[BaseException], int, grpc.StatusCode], ...] = (
    (kserve_errors.InvalidInput, 400, grpc.StatusCode.INVALID_ARGUMENT),
    (kserve_errors.UnsupportedProtocol, 400, grpc.StatusCode.INVALID_ARGUMENT),
    (kserve_errors.ModelNotFound, 404, grpc.StatusCode.NOT_FOUND),
    (kserve_errors.ModelNotReady, 503, grpc.StatusCode.UNAVAILABLE),
    (kserve_errors.ServerNotReady, 503, grpc.StatusCode.UNAVAILABLE),
    (kserve_errors.ServerNotLive, 503, grpc.StatusCode.UNAVAILABLE),
    (NotImplementedError, 501, grpc.StatusCode.UNIMPLEMENTED),
)


def status(exc: BaseException) -> tuple[int, grpc.StatusCode] | None:
    """(HTTP status, gRPC code) of an error we expect; None for a bug."""
    if isinstance(exc, TradeloopError):
        return http_status(exc), grpc.StatusCode[grpc_code(exc)]
    for kind, http, code in _KSERVE_ERRORS:
        if isinstance(exc, kind):
            return http, code
    return None


# -- REST ----------------------------------------------------------------------------------------------
def install_handlers(app: FastAPI) -> None:
    """tradeloop's REST error handlers on KServe's app (after KServe's own, which they replace)."""
    for kind in (TradeloopError, *(kind for kind, _, _ in _KSERVE_ERRORS)):
        app.add_exception_handler(kind, _error_response)  # one log line, not a traceback
    app.add_exception_handler(RequestValidationError, _malformed_body)
    app.add_exception_handler(HTTPException, _http_exception)


async def _error_response(request: Any, exc: Exception) -> JSONResponse:
    code = status(exc)
    if code is None:
        log.error("internal error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)
    log.info("%s %s: %d %s", request.method, request.url.path, code[0], exc)
    return JSONResponse({"error": str(exc)}, status_code=code[0])


async def _http_exception(request: Any, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (unknown route, a body that is not UTF-8) as ``{"error": ...}``."""
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _malformed_body(request: Any, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 for a v2 body that is not an inference request: our 400, naming the field."""
    return await _error_response(request, _invalid_body(exc.errors(), getattr(exc, "body", None)))


def _invalid_body(problems: Sequence[Any], body: Any) -> InvalidInput:
    """pydantic's complaints about a v2 body as one InvalidInput naming where the first defect is."""
    # FastAPI tries the body as InferenceRequest and as bytes: the bytes branch says nothing useful.
    relevant = [p for p in problems if tuple(p.get("loc", ()))[:2] != ("body", "bytes")] or list(problems)
    if not relevant:
        return InvalidInput("body", "not an inference request")
    first = relevant[0]
    more = f" (and {len(relevant) - 1} more)" if len(relevant) > 1 else ""
    return InvalidInput(_location(tuple(first.get("loc", ())), body), f"{first.get('msg', 'invalid')}{more}")


def _location(loc: tuple[Any, ...], body: Any) -> str:
    """``("body", "InferenceRequest", "inputs", 0, "shape")`` → ``inputs[0] (window).shape``."""
    parts = [p for p in loc if p not in ("body", "InferenceRequest")]
    if not parts or all(isinstance(p, int) for p in parts):
        return "body"
    text = ""
    for i, part in enumerate(parts):
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        if i == 1 and parts[0] == "inputs" and isinstance(part, int) and isinstance(body, dict):
            tensors = body.get("inputs")
            if isinstance(tensors, list) and part < len(tensors) and isinstance(tensors[part], dict):
                name = tensors[part].get("name")
                if isinstance(name, str):
                    text += f" ({name})"
    return text


# -- bodies KServe would read unchecked ----------------------------------------------------------------
def json_request(body: bytes) -> InferenceRequest:
    """A v2 JSON body sent without a JSON content type (``curl -d`` does that), read as JSON."""
    try:
        parsed = json.loads(body)  # as FastAPI reads JSON bodies: NaN literals are the model's to refuse
    except ValueError as exc:
        raise InvalidInput("body", f"neither JSON nor a binary inference request: {exc}") from exc
    try:
        return InferenceRequest.model_validate(parsed)
    except ValidationError as exc:
        raise _invalid_body([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()], parsed) from exc


def check_binary_body(body: bytes, headers: dict[str, str]) -> None:
    """Check a binary v2 body (JSON part, then the inputs' bytes) before KServe reshapes it; names
    the input whose part disagrees with its shape or datatype."""
    header = INFERENCE_CONTENT_LENGTH_HEADER
    try:
        length = int(headers[header])
    except ValueError as exc:
        raise InvalidInput(header, f"{headers[header]!r} is not a number of bytes") from exc
    if not 0 < length <= len(body):
        raise InvalidInput(header, f"{length} is outside the body of {len(body)} bytes")
    try:
        head = orjson.loads(body[:length])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body", f"the JSON part is not valid JSON: {exc}") from exc
    _check_header(head)
    offset = length
    for tensor in head["inputs"]:
        size = _binary_size(tensor)
        if size is None:
            continue  # its data is in the JSON part
        name, datatype = tensor["name"], tensor["datatype"].upper()
        if offset + size > len(body):
            raise InvalidInput(name, f"binary_data_size {size} runs past the end of the body")
        chunk, offset = body[offset : offset + size], offset + size
        if datatype == "BYTES":
            try:
                got = len(deserialize_bytes_tensor(chunk))
            except Exception as exc:  # a malformed length prefix: the caller's bytes
                raise InvalidInput(name, "BYTES contents are not length-prefixed strings") from exc
        else:
            itemsize = np.dtype(to_np_dtype(datatype)).itemsize
            if size % itemsize:
                raise InvalidInput(name, f"{size} bytes are not whole {datatype} values")
            got = size // itemsize
        count = math.prod(tensor["shape"])
        if got != count:
            raise InvalidInput(name, f"shape {tensor['shape']} needs {count} values, got {got}")


def _check_header(head: Any) -> None:
    """The JSON part of a binary body: the fields KServe indexes without looking."""
    if not isinstance(head, dict):
        raise InvalidInput("body", "the JSON part must be an object")
    if not isinstance(head.get("inputs"), list):
        raise InvalidInput("inputs", "must be a list of tensors")
    if not isinstance(head.get("parameters") or {}, dict):
        raise InvalidInput("parameters", "must be an object")
    if not isinstance(head.get("id") or "", str):
        raise InvalidInput("id", "must be a string")
    outputs = head.get("outputs")
    if outputs is not None and not (
        isinstance(outputs, list)
        and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
        and all(isinstance(o.get("parameters") or {}, dict) for o in outputs)
    ):
        raise InvalidInput("outputs", "must be a list of objects with a string 'name'")
    for i, tensor in enumerate(head["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InvalidInput(f"inputs[{i}]", "must be an object with a string 'name'")
        name, shape, datatype = tensor["name"], tensor.get("shape"), tensor.get("datatype")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise InvalidInput(name, f"shape must be a list of non-negative integers, got {shape!r}")
        if not isinstance(datatype, str) or to_np_dtype(datatype.upper()) is None:
            raise InvalidInput(name, f"unknown datatype {datatype!r}")


def _binary_size(tensor: dict[str, Any]) -> int | None:
    """Bytes of ``tensor`` after the JSON part; None when its data is in the JSON part."""
    params = tensor.get("parameters") or {}
    if tensor.get("data") is not None or not isinstance(params, dict):
        return None  # KServe reads the JSON data, or refuses the tensor itself (400)
    size = params.get("binary_data_size")
    if size is None:
        raise InvalidInput(tensor["name"], "has neither 'data' nor a 'binary_data_size' parameter")
    if type(size) is not int or size < 0:
        raise InvalidInput(tensor["name"], f"binary_data_size must be a non-negative integer, got {size!r}")
    return size


# -- gRPC ----------------------------------------------------------------------------------------------
class StatusInterceptor(AsyncExceptionToStatusInterceptor):
    """gRPC status for every error: tradeloop's mapping, KServe's types, INTERNAL for a bug."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str):
        if isinstance(ex, GrpcException):
            await context.abort(ex.status_code, ex.details)
        code = status(ex)
        if code is None:
            log.error("internal error in %s", method_name, exc_info=ex)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(ex).__name__}")
        log.info("%s: %s %s", method_name, code[1].name, ex)
        await context.abort(code[1], str(ex))
