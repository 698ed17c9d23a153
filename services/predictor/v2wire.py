"""Open Inference Protocol v2 on the wire, for a front end that parses requests itself (Ray Serve).

KServe's model server parses v2 REST and gRPC for its front end; Ray Serve hands over raw bytes and
raw protobuf messages, so this module turns them into the shared
:class:`~services.predictor.protocol.Tensor` list that :func:`~services.predictor.protocol.decode_v2`
validates, and turns an :class:`~services.predictor.core.Answer` back:

* REST: JSON tensors, plus the binary tensor data extension ``tritonclient.http`` uses by default
  (an ``Inference-Header-Content-Length`` header, ``parameters.binary_data_size`` per input, and
  binary outputs on ``binary_data_output`` / per-output ``binary_data``);
* gRPC: ``ModelInferRequest`` with ``raw_input_contents`` or typed ``contents``; responses carry
  only ``raw_output_contents`` (``tritonclient.grpc`` decodes nothing else).

Raw tensors are little-endian; BYTES elements are a 4-byte little-endian length, then the bytes.
Every defect is an :class:`~tradeloop.errors.InvalidInput` naming the field, never another error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.predictor import grpc_predict_v2_pb2 as pb
from services.predictor.core import Answer
from services.predictor.protocol import INPUTS, OUTPUTS, Request, Tensor, decode_v2, encode_v2
from tradeloop.errors import InvalidInput
from tradeloop.features import spec
from tradeloop.inference import FEATURE_INPUTS

__all__ = [
    "HEADER_LENGTH",
    "MODEL_NAME",
    "Outputs",
    "decode_grpc",
    "decode_rest",
    "encode_grpc",
    "encode_rest",
    "grpc_metadata",
    "metadata",
    "parse_json",
]

MODEL_NAME = "tradeloop"
HEADER_LENGTH = "Inference-Header-Content-Length"
_RAW_DTYPES = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2", "INT8": "i1"}
_CONTENTS = {  # gRPC typed contents field per datatype
    "BYTES": "bytes_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "BOOL": "bool_contents",
}
_SHAPES = {
    "symbol": [-1],
    "timeframe": [-1],
    "window": [-1, -1, len(spec.CHANNELS)],
    "features": [-1, len(FEATURE_INPUTS)],
}


@dataclass(frozen=True)
class Outputs:
    """What the caller asked back: output names in order, which of them as binary, the request id."""

    names: list[str]
    binary: frozenset[str] = frozenset()
    request_id: str = ""


def metadata(version: str | None) -> dict[str, Any]:
    """Model metadata with the real tensor lists (names, datatypes, shapes; -1 = any length)."""
    return {
        "name": MODEL_NAME,
        "versions": [version] if version else [],
        "platform": "tradeloop",
        "inputs": [{"name": n, "datatype": d, "shape": _SHAPES[n]} for n, d in INPUTS.items()],
        "outputs": [{"name": n, "datatype": d, "shape": [-1]} for n, d in OUTPUTS.items()],
    }


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidInput("body", f"not valid JSON: {str(exc)[:200]}") from None


# -- raw tensors -----------------------------------------------------------------------------------
def _to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(len(b).to_bytes(4, "little") + b for b in tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=_RAW_DTYPES[tensor.datatype]).tobytes()


def _from_raw(name: str, datatype: Any, raw: bytes) -> Any:
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            size = int.from_bytes(raw[offset : offset + 4], "little") if offset + 4 <= len(raw) else -1
            if size < 0 or offset + 4 + size > len(raw):
                raise InvalidInput(
                    name, "raw BYTES must be 4-byte little-endian lengths, each then its bytes"
                )
            items.append(raw[offset + 4 : offset + 4 + size])
            offset += 4 + size
        return items
    dtype = _RAW_DTYPES.get(datatype) if isinstance(datatype, str) and datatype != "INT8" else None
    if dtype is None:
        raise InvalidInput(name, f"datatype must be {INPUTS.get(name, 'FP32 or BYTES')}, got {datatype!r}")
    if len(raw) % np.dtype(dtype).itemsize:
        raise InvalidInput(name, f"{len(raw)} bytes of raw data are not a whole number of {datatype} values")
    return np.frombuffer(raw, dtype=dtype)


def _decode(tensors: list[Tensor]) -> Request:
    for i, t in enumerate(tensors):
        if not isinstance(t.name, str) or not t.name:
            raise InvalidInput(f"inputs[{i}].name", "must be a non-empty string")
        if not isinstance(t.datatype, str):
            raise InvalidInput(t.name, f"datatype must be a string such as {INPUTS.get(t.name, 'FP32')}")
    return decode_v2(tensors)


def _output_names(names: list[Any]) -> list[str]:
    """Requested outputs (all when none are named); InvalidInput for a name that is no output."""
    for name in names:
        if not isinstance(name, str) or name not in OUTPUTS:
            raise InvalidInput("outputs", f"{name!r} is not an output; outputs are {', '.join(OUTPUTS)}")
    if len(set(names)) != len(names):
        raise InvalidInput("outputs", "names an output twice")
    return list(names) or list(OUTPUTS)


# -- REST ------------------------------------------------------------------------------------------
def decode_rest(body: bytes, header_length: str | None = None) -> tuple[Request, Outputs]:
    """A v2 REST body (JSON, then binary tensor data when ``header_length`` is given)."""
    tail = b""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidInput(HEADER_LENGTH, f"must be an integer, got {header_length[:40]!r}") from None
        if not 0 < n <= len(body):
            raise InvalidInput(HEADER_LENGTH, f"{n} is outside the body's {len(body)} bytes")
        body, tail = body[:n], body[n:]
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput("body", "must be a JSON object with an 'inputs' list")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidInput("inputs", "must be a list of tensors")
    tensors, offset = [], 0
    for i, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise InvalidInput(f"inputs[{i}]", "must be an object with name, datatype, shape and data")
        name, params = item.get("name"), item.get("parameters")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"inputs[{i}].name", "must be a non-empty string")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(tail):
                raise InvalidInput(name, f"binary_data_size {size!r} does not fit the binary data sent")
            data = _from_raw(name, item.get("datatype"), tail[offset : offset + size])
            offset += size
        elif "data" in item:
            data = item["data"]
        else:
            raise InvalidInput(name, "missing 'data' (or parameters.binary_data_size)")
        datatype, shape = item.get("datatype"), item.get("shape")  # as sent: _decode checks them
        tensors.append(Tensor(name, datatype, shape, data))
    if offset != len(tail):
        raise InvalidInput("body", f"{len(tail) - offset} bytes of binary data belong to no input")
    params = doc.get("parameters")
    binary_default = isinstance(params, dict) and params.get("binary_data_output") is True
    asked = doc.get("outputs") or []
    if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
        raise InvalidInput("outputs", "must be a list of objects with a name")
    names = _output_names([o.get("name") for o in asked])
    binary = {
        o["name"]
        for o in asked
        if (o.get("parameters") if isinstance(o.get("parameters"), dict) else {}).get(
            "binary_data", binary_default
        )
        is True
    }
    if not asked and binary_default:
        binary = set(names)
    request_id = doc.get("id")
    outputs = Outputs(names, frozenset(binary), request_id if isinstance(request_id, str) else "")
    return _decode(tensors), outputs


def encode_rest(answer: Answer, outputs: Outputs) -> tuple[bytes, int | None]:
    """(body, JSON header length or None): binary outputs follow the JSON when any were asked."""
    tensors = {t.name: t for t in encode_v2(answer)}
    docs, chunks = [], []
    for name in outputs.names:
        t = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": t.datatype, "shape": t.shape}
        if name in outputs.binary:
            raw = _to_raw(t)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif t.datatype == "BYTES":
            entry["data"] = [b.decode() for b in t.data]
        else:
            entry["data"] = np.asarray(t.data).tolist()
        docs.append(entry)
    head = json.dumps(
        {
            "model_name": MODEL_NAME,
            "model_version": answer.model_version,
            "id": outputs.request_id,
            "outputs": docs,
        }
    ).encode()
    return (head + b"".join(chunks), len(head)) if chunks else (head, None)


# -- gRPC ------------------------------------------------------------------------------------------
def decode_grpc(request: Any) -> tuple[Request, Outputs]:
    """A ``ModelInferRequest`` with raw input contents (as tritonclient sends) or typed contents."""
    names = _output_names([o.name for o in request.outputs])
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput("raw_input_contents", f"has {len(raw)} entries for {len(request.inputs)} inputs")
    tensors = []
    for i, item in enumerate(request.inputs):
        if not item.name:
            raise InvalidInput(f"inputs[{i}].name", "must be a non-empty string")
        if raw:
            data = _from_raw(item.name, item.datatype, raw[i])
        elif item.datatype in _CONTENTS:
            data = list(getattr(item.contents, _CONTENTS[item.datatype]))
        else:
            data = []  # decode_v2's datatype check names the problem
        tensors.append(Tensor(item.name, item.datatype, list(item.shape), data))
    return _decode(tensors), Outputs(names, frozenset(names), request.id)


def encode_grpc(answer: Answer, outputs: Outputs) -> Any:
    """A ``ModelInferResponse`` whose outputs are all raw contents."""
    tensors = {t.name: t for t in encode_v2(answer)}
    response = pb.ModelInferResponse(
        model_name=MODEL_NAME, model_version=answer.model_version, id=outputs.request_id
    )
    for name in outputs.names:
        t = tensors[name]
        response.outputs.add(name=name, datatype=t.datatype, shape=t.shape)
        response.raw_output_contents.append(_to_raw(t))
    return response


def grpc_metadata(version: str | None) -> Any:
    """:func:`metadata` as a ``ModelMetadataResponse``."""
    meta = metadata(version)
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta["name"],
        versions=meta["versions"],
        platform=meta["platform"],
        inputs=[tensor(**t) for t in meta["inputs"]],
        outputs=[tensor(**t) for t in meta["outputs"]],
    )
