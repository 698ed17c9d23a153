"""A small client for a running predictor: v1 REST, v2 REST and v2 gRPC, one answer shape.

``tradeloop predict`` and the demo call servers through it, so both read answers the same way and
map a server's error to the tradeloop type with the same exit code. Connections are kept open
between calls (an ``httpx.Client`` and one gRPC channel), so repeated calls measure the server,
not the handshake. httpx and tritonclient are imported when a client is made, not at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tradeloop.errors import InvalidInput, ModelNotReady, RequestTooLarge, TradeloopError

__all__ = ["MODEL", "OUTPUTS", "Answer", "PredictClient"]

MODEL = "tradeloop"
OUTPUTS = ("prob_up", "expected_return", "signal", "model_version", "as_of", "feature_age_s")


@dataclass(frozen=True, slots=True)
class Answer:
    """One series' prediction as a server returned it; ``feature_age_s`` None when not known."""

    series: str
    prob_up: float
    expected_return: float
    signal: int
    model_version: str
    as_of: str
    feature_age_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _answer(symbol: str, timeframe: str, values: dict[str, Any]) -> Answer:
    raw = values.get("feature_age_s")
    age = -1.0 if raw is None else float(raw)  # v1 sends null, v2 sends -1 for "not known"
    return Answer(
        series=f"{symbol}:{timeframe}",
        prob_up=float(values["prob_up"]),
        expected_return=float(values["expected_return"]),
        signal=int(values["signal"]),
        model_version=str(values["model_version"]),
        as_of=str(values["as_of"]),
        feature_age_s=None if age < 0 else age,
    )


def _remote_error(status: int | str, message: str) -> TradeloopError:
    """The server's error as the tradeloop type that gives the same exit code here."""
    text = f"the server answered {status}: {message}"
    if status in (413, "RESOURCE_EXHAUSTED"):
        return RequestTooLarge("request", text)
    if status in (400, "INVALID_ARGUMENT", "FAILED_PRECONDITION"):
        return InvalidInput("request", text)
    if status in (503, "UNAVAILABLE"):
        return ModelNotReady(text)
    return TradeloopError(text)


class PredictClient:
    """Calls one server; ``url`` is its REST address, ``grpc_url`` its gRPC ``host:port``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        grpc_url: str = "127.0.0.1:8081",
        *,
        timeout: float = 10.0,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.grpc_url = grpc_url
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout)
        self._grpc: Any = None

    def close(self) -> None:
        self._http.close()
        if self._grpc is not None:
            self._grpc.close()

    def __enter__(self) -> PredictClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- REST ------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        endpoint = f"{self.url}{path}"
        try:
            response = self._http.post(endpoint, json=body)
        except httpx.HTTPError as exc:
            raise TradeloopError(f"cannot reach {endpoint}: {type(exc).__name__}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text[:300]}
        if response.status_code != 200:
            raise _remote_error(response.status_code, str(payload.get("error", payload)))
        return payload

    def v1(self, symbol: str, timeframe: str) -> Answer:
        """``POST /v1/models/tradeloop:predict`` with one instance."""
        body = {"instances": [{"symbol": symbol, "timeframe": timeframe}]}
        payload = self._post(f"/v1/models/{MODEL}:predict", body)
        return _answer(symbol, timeframe, payload["predictions"][0])

    def v2(self, symbol: str, timeframe: str) -> Answer:
        """``POST /v2/models/tradeloop/infer`` with BYTES tensors ``symbol`` and ``timeframe``."""
        body = {
            "inputs": [
                {"name": "symbol", "datatype": "BYTES", "shape": [1], "data": [symbol]},
                {"name": "timeframe", "datatype": "BYTES", "shape": [1], "data": [timeframe]},
            ]
        }
        payload = self._post(f"/v2/models/{MODEL}/infer", body)
        return _answer(symbol, timeframe, {o["name"]: o["data"][0] for o in payload["outputs"]})

    def ready(self) -> bool:
        """Whether ``/v2/health/ready`` answers 200 (a champion is loaded and the store answers)."""
        import httpx

        try:
            return self._http.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    # -- gRPC ------------------------------------------------------------------------------------
    def grpc(self, symbol: str, timeframe: str) -> Answer:
        """``ModelInfer`` over the v2 gRPC protocol (tritonclient)."""
        import numpy as np
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        if self._grpc is None:
            self._grpc = grpcclient.InferenceServerClient(self.grpc_url)
            try:
                self._grpc.is_server_live(client_timeout=self.timeout)
            except InferenceServerException as exc:
                self._grpc.close()
                self._grpc = None
                raise TradeloopError(f"cannot reach {self.grpc_url}: {exc.message()}") from exc
        inputs = []
        for name, value in (("symbol", symbol), ("timeframe", timeframe)):
            tensor = grpcclient.InferInput(name, [1], "BYTES")
            tensor.set_data_from_numpy(np.array([value.encode()], dtype=object))
            inputs.append(tensor)
        try:
            result = self._grpc.infer(MODEL, inputs, client_timeout=self.timeout)
        except InferenceServerException as exc:
            raise _remote_error(str(exc.status()).removeprefix("StatusCode."), exc.message() or "") from exc
        values: dict[str, Any] = {}
        for name in OUTPUTS:
            value = result.as_numpy(name)[0]
            values[name] = value.decode() if isinstance(value, bytes) else value
        return _answer(symbol, timeframe, values)
