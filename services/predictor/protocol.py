"""Requests and responses as tensors, validated once for every engine and protocol.

Open Inference Protocol v2 inputs, by name:

* ``symbol`` and ``timeframe``: BYTES, shape [N] — predict named series from online features; or
* ``window`` (FP32, [N, W, C]) and ``features`` (FP32, [N, F]) — predict caller-supplied rows
  (F = indicators then metadata, :data:`tradeloop.inference.FEATURE_INPUTS`; W ≥ the model's W).

Outputs: ``prob_up`` FP32, ``expected_return`` FP32, ``signal`` INT8, ``model_version`` BYTES,
``as_of`` BYTES, ``feature_age_s`` FP32 (−1 for caller-supplied rows, whose age is unknown), all
shape [N]. v1 carries the same names inside ``instances`` (one object per row) and answers
``predictions`` (one object per row). Every defect is an :class:`InvalidInput` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.predictor.core import Answer
from tradeloop.errors import InvalidInput

__all__ = [
    "INPUTS",
    "OUTPUTS",
    "Request",
    "Tensor",
    "decode_v1",
    "decode_v2",
    "encode_v1",
    "encode_v2",
]

INPUTS = {"symbol": "BYTES", "timeframe": "BYTES", "window": "FP32", "features": "FP32"}
OUTPUTS = {
    "prob_up": "FP32",
    "expected_return": "FP32",
    "signal": "INT8",
    "model_version": "BYTES",
    "as_of": "BYTES",
    "feature_age_s": "FP32",
}
_NUMERIC = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}


@dataclass(frozen=True)
class Tensor:
    """One named input or output: v2 datatype, shape and data (a flat list or an ndarray)."""

    name: str
    datatype: str
    shape: list[int]
    data: Any


@dataclass(frozen=True)
class Request:
    """A decoded request: either named series or caller-supplied rows."""

    symbols: list[str] | None = None
    timeframes: list[str] | None = None
    window: np.ndarray | None = None
    features: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.symbols) if self.symbols is not None else len(self.features)  # type: ignore[arg-type]


def _text(name: str, value: Any) -> str:
    if isinstance(value, bytes | bytearray | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(name, "BYTES values must be UTF-8 text") from exc
    if isinstance(value, str):
        return value
    raise InvalidInput(name, f"BYTES values must be strings, got {type(value).__name__}")


def _texts(name: str, values: list[Any]) -> list[str]:
    """:func:`_text` of each value, with plain ``str`` and ``bytes`` (nearly all) read directly."""
    out = []
    for value in values:
        kind = type(value)
        if kind is str:
            out.append(value)
        elif kind is bytes:
            try:
                out.append(value.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InvalidInput(name, "BYTES values must be UTF-8 text") from exc
        else:
            out.append(_text(name, value))
    return out


def _values(tensor: Tensor) -> np.ndarray | list[str]:
    name, shape = tensor.name, tensor.shape
    if not isinstance(shape, list | tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(name, f"shape must be a list of non-negative integers, got {shape!r}")
    expected_type = INPUTS[name]
    if tensor.datatype != expected_type and not (expected_type == "FP32" and tensor.datatype in _NUMERIC):
        raise InvalidInput(name, f"datatype must be {expected_type}, got {tensor.datatype!r}")
    count = math.prod(shape)  # exact: np.prod wraps around in int64 ([2**32, 2**32] → 0)
    data = tensor.data
    if expected_type == "BYTES":
        flat = (
            list(np.asarray(data, dtype=object).reshape(-1)) if not isinstance(data, list) else _flatten(data)
        )
        if len(flat) != count:
            raise InvalidInput(name, f"shape {list(shape)} needs {count} values, got {len(flat)}")
        if len(shape) != 1:
            raise InvalidInput(name, f"must have shape [N], got {list(shape)}")
        return _texts(name, flat)
    try:
        array = np.asarray(data, dtype=_NUMERIC.get(tensor.datatype, np.float32))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(name, f"data must be numbers of type {tensor.datatype}") from exc
    if array.size != count:
        raise InvalidInput(name, f"shape {list(shape)} needs {count} values, got {array.size}")
    array = array.reshape(shape).astype(np.float32)
    if not np.isfinite(array).all():
        raise InvalidInput(name, "holds NaN or inf")
    return array


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data  # already flat (every well-formed request): read only, never changed
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def decode_v2(tensors: Sequence[Tensor]) -> Request:
    """Validate v2 input tensors into a :class:`Request`."""
    names = [t.name for t in tensors]
    for name in names:
        if names.count(name) > 1:
            raise InvalidInput(name, "duplicate tensor name")
        if name not in INPUTS:
            raise InvalidInput(name, "unknown input; expected symbol+timeframe or window+features")
    given = set(names)
    if given == {"symbol", "timeframe"}:
        values = {t.name: _values(t) for t in tensors}
        symbols, timeframes = values["symbol"], values["timeframe"]
        if len(symbols) != len(timeframes):
            raise InvalidInput("timeframe", f"has {len(timeframes)} values but symbol has {len(symbols)}")
        if not symbols:
            raise InvalidInput("symbol", "N = 0: a request needs at least one row")
        return Request(symbols=list(symbols), timeframes=list(timeframes))  # type: ignore[arg-type]
    if given == {"window", "features"}:
        values = {t.name: _values(t) for t in tensors}
        window, features = values["window"], values["features"]
        if not isinstance(window, np.ndarray) or not isinstance(features, np.ndarray):
            raise InvalidInput("window", "window and features must be numeric tensors")
        if window.ndim != 3:
            raise InvalidInput("window", f"must have shape [N, W, C], got {list(window.shape)}")
        if features.ndim != 2:
            raise InvalidInput("features", f"must have shape [N, F], got {list(features.shape)}")
        if len(features) == 0:
            raise InvalidInput("features", "N = 0: a request needs at least one row")
        return Request(window=window, features=features)
    missing = (
        ({"symbol", "timeframe"} - given)
        if given & {"symbol", "timeframe"}
        else ({"window", "features"} - given)
    )
    field = sorted(missing)[0] if missing else "inputs"
    raise InvalidInput(field, "missing input; send symbol+timeframe (BYTES [N]) or window+features (FP32)")


def decode_v1(body: Any) -> Request:
    """Validate a v1 body: ``{"instances": [{"symbol", "timeframe"} | {"window", "features"}, ...]}``."""
    if not isinstance(body, dict):
        raise InvalidInput("instances", "the body must be a JSON object with an 'instances' list")
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise InvalidInput("instances", "must be a list of objects")
    if not instances:
        raise InvalidInput("instances", "N = 0: a request needs at least one row")
    if not all(isinstance(i, dict) for i in instances):
        raise InvalidInput("instances", "every instance must be an object")
    keys = set(instances[0])
    if any(set(i) != keys for i in instances):
        raise InvalidInput("instances", "every instance must carry the same fields")
    n = len(instances)
    if keys == {"symbol", "timeframe"}:
        tensors = [Tensor(k, "BYTES", [n], [i[k] for i in instances]) for k in ("symbol", "timeframe")]
        return decode_v2(tensors)
    if keys == {"window", "features"}:
        windows = [i["window"] for i in instances]
        feats = [i["features"] for i in instances]
        try:
            w = np.asarray(windows, dtype=np.float32)
            f = np.asarray(feats, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                "window", "window and features must be numeric arrays of equal shape per row"
            ) from exc
        return decode_v2(
            [Tensor("window", "FP32", list(w.shape), w), Tensor("features", "FP32", list(f.shape), f)]
        )
    unknown = sorted(keys - set(INPUTS))
    pair = {"symbol", "timeframe"} if keys & {"symbol", "timeframe"} else {"window", "features"}
    field = unknown[0] if unknown else (sorted(pair - keys) or ["instances"])[0]  # the missing half
    raise InvalidInput(field, "each instance needs symbol+timeframe or window+features")


def encode_v2(answer: Answer) -> list[Tensor]:
    """The six output tensors of ``answer``."""
    n = len(answer.prob_up)
    age = np.asarray(answer.feature_age_s, dtype=np.float32)
    if np.isnan(age).any():
        age = np.where(np.isnan(age), np.float32(-1.0), age)
    version = np.asarray([answer.model_version.encode()] * n, dtype=object)
    as_of = np.asarray([a.encode() for a in answer.as_of], dtype=object)
    # The answer's arrays are passed as they are (no copies): nothing writes to them afterwards.
    return [
        Tensor("prob_up", "FP32", [n], np.asarray(answer.prob_up, dtype=np.float32)),
        Tensor("expected_return", "FP32", [n], np.asarray(answer.expected_return, dtype=np.float32)),
        Tensor("signal", "INT8", [n], np.asarray(answer.signal, dtype=np.int8)),
        Tensor("model_version", "BYTES", [n], version),
        Tensor("as_of", "BYTES", [n], as_of),
        Tensor("feature_age_s", "FP32", [n], age),
    ]


def encode_v1(answer: Answer) -> dict[str, Any]:
    return {"predictions": answer.rows()}
