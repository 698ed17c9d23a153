"""``tradeloop serve`` runs the predictor; ``tradeloop predict`` asks a running one.

The serving engines (KServe, Ray Serve) and the clients (httpx, tritonclient) are imported inside
the commands, so the rest of the CLI starts fast and works where only the core is installed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from tradeloop.cli.output import Output, fail_on_errors, table
from tradeloop.errors import InvalidInput, ModelNotReady, RequestTooLarge, TradeloopError

__all__ = ["predict", "serve"]

MODEL = "tradeloop"
OUTPUTS = ("prob_up", "expected_return", "signal", "model_version", "as_of", "feature_age_s")


class Engine(StrEnum):
    kserve = "kserve"
    rayserve = "rayserve"


def serve(
    ctx: typer.Context,
    engine: Annotated[Engine, typer.Option("--engine", help="Serving engine.")] = Engine.kserve,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port", min=1, max=65535, help="REST port.")] = 8080,
    grpc_port: Annotated[int, typer.Option("--grpc-port", min=1, max=65535, help="gRPC port.")] = 8081,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="REST worker processes (kserve only).")
    ] = 1,
    max_feature_age: Annotated[
        float | None,
        typer.Option(
            "--max-feature-age",
            envvar="TRADELOOP_MAX_FEATURE_AGE",
            min=0,
            help="Seconds online features may be old; 0 turns the check off (default: 3 bars + 120 s).",
        ),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.05, help="Seconds between champion-alias checks.")
    ] = 10.0,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows per request before 413.")] = 1000,
    mlflow_uri: Annotated[
        str | None, typer.Option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")
    ] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write the prediction log.")] = False,
) -> None:
    """Serve the champion over REST (v1, v2) and gRPC (v2) until SIGTERM; reloads a new champion live."""
    out: Output = ctx.obj
    with fail_on_errors(out):
        from services.predictor.service import ServiceConfig

        config = ServiceConfig(
            home=out.settings.home,
            mlflow_uri=mlflow_uri,
            max_feature_age=max_feature_age,
            max_rows=max_rows,
            poll_s=poll_interval,
            log_predictions=not no_log,
        )
        if engine is Engine.kserve:
            from services.predictor.kserve_app import run_kserve

            run_kserve(config, host=host, http_port=http_port, grpc_port=grpc_port, workers=workers)
        else:
            if workers != 1:
                raise InvalidInput("workers", "only --engine kserve takes --workers; Ray Serve has replicas")
            from services.predictor.rayserve_app import run_rayserve

            run_rayserve(config, host=host, http_port=http_port, grpc_port=grpc_port)


def predict(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTCUSDT.")],
    timeframe: Annotated[str, typer.Argument(help="Timeframe, e.g. 1h.")],
    url: Annotated[str, typer.Option("--url", help="REST address of the server.")] = "http://127.0.0.1:8080",
    use_grpc: Annotated[bool, typer.Option("--grpc", help="Call v2 gRPC instead of v2 REST.")] = False,
    grpc_url: Annotated[str, typer.Option("--grpc-url", help="gRPC host:port.")] = "127.0.0.1:8081",
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait.")] = 10.0,
) -> None:
    """Ask a running server for the prediction of one series (v2 REST, or gRPC with --grpc)."""
    out: Output = ctx.obj
    with fail_on_errors(out):
        if use_grpc:
            row = _predict_grpc(grpc_url, symbol, timeframe, timeout)
        else:
            row = _predict_rest(url, symbol, timeframe, timeout)
    shown = {
        "prob_up": f"{row['prob_up']:.4f}",
        "expected_return": f"{row['expected_return']:+.4e}",
        "signal": row["signal"],
        "model_version": row["model_version"],
        "as_of": row["as_of"] or "-",
        "feature_age_s": "-" if row["feature_age_s"] is None else f"{row['feature_age_s']:,.0f}",
    }
    out.emit(row, table=table(row["series"], ("output", "value"), shown.items()))


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


def _row(symbol: str, timeframe: str, values: dict[str, Any]) -> dict[str, Any]:
    age = float(values["feature_age_s"])
    return {
        "series": f"{symbol}:{timeframe}",
        "prob_up": float(values["prob_up"]),
        "expected_return": float(values["expected_return"]),
        "signal": int(values["signal"]),
        "model_version": str(values["model_version"]),
        "as_of": str(values["as_of"]),
        "feature_age_s": None if age < 0 else age,
    }


def _predict_rest(url: str, symbol: str, timeframe: str, timeout: float) -> dict[str, Any]:
    import httpx

    body = {
        "inputs": [
            {"name": "symbol", "datatype": "BYTES", "shape": [1], "data": [symbol]},
            {"name": "timeframe", "datatype": "BYTES", "shape": [1], "data": [timeframe]},
        ]
    }
    endpoint = f"{url.rstrip('/')}/v2/models/{MODEL}/infer"
    try:
        response = httpx.post(endpoint, json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TradeloopError(f"cannot reach {endpoint}: {type(exc).__name__}: {exc}") from exc
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": response.text[:300]}
    if response.status_code != 200:
        raise _remote_error(response.status_code, str(payload.get("error", payload)))
    values = {o["name"]: o["data"][0] for o in payload["outputs"]}
    return _row(symbol, timeframe, values)


def _predict_grpc(grpc_url: str, symbol: str, timeframe: str, timeout: float) -> dict[str, Any]:
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        try:
            client.is_server_live(client_timeout=timeout)
        except InferenceServerException as exc:
            raise TradeloopError(f"cannot reach {grpc_url}: {exc.message()}") from exc
        inputs = []
        for name, value in (("symbol", symbol), ("timeframe", timeframe)):
            tensor = grpcclient.InferInput(name, [1], "BYTES")
            tensor.set_data_from_numpy(np.array([value.encode()], dtype=object))
            inputs.append(tensor)
        try:
            result = client.infer(MODEL, inputs, client_timeout=timeout)
        except InferenceServerException as exc:
            raise _remote_error(str(exc.status()).removeprefix("StatusCode."), exc.message() or "") from exc
    finally:
        client.close()
    values: dict[str, Any] = {}
    for name in OUTPUTS:
        value = result.as_numpy(name)[0]
        values[name] = value.decode() if isinstance(value, bytes) else value
    return _row(symbol, timeframe, values)
