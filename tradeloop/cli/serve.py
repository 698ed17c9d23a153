"""``tradeloop serve`` runs the predictor; ``tradeloop predict`` asks a running one.

The serving engines (KServe, Ray Serve) and the clients (httpx, tritonclient) are imported inside
the commands, so the rest of the CLI starts fast and works where only the core is installed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from tradeloop.cli.output import Output, fail_on_errors, table
from tradeloop.errors import InvalidInput

if TYPE_CHECKING:
    from tradeloop.client import Answer

__all__ = ["predict", "serve", "shown"]


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
    use_v1: Annotated[bool, typer.Option("--v1", help="Call v1 REST instead of v2 REST.")] = False,
    grpc_url: Annotated[str, typer.Option("--grpc-url", help="gRPC host:port.")] = "127.0.0.1:8081",
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait.")] = 10.0,
) -> None:
    """Ask a running server for the prediction of one series (v2 REST; --v1 or --grpc)."""
    from tradeloop.client import PredictClient

    out: Output = ctx.obj
    with fail_on_errors(out), PredictClient(url, grpc_url, timeout=timeout) as client:
        call = client.grpc if use_grpc else client.v1 if use_v1 else client.v2
        answer = call(symbol, timeframe)
    row = answer.to_dict()
    out.emit(row, table=table(answer.series, ("output", "value"), shown(answer).items()))


def shown(answer: Answer) -> dict[str, str]:
    """An answer's values as people read them (fixed decimals, age in seconds)."""
    return {
        "prob_up": f"{answer.prob_up:.4f}",
        "expected_return": f"{answer.expected_return:+.4e}",
        "signal": str(answer.signal),
        "model_version": answer.model_version,
        "as_of": answer.as_of or "-",
        "feature_age_s": "-" if answer.feature_age_s is None else f"{answer.feature_age_s:,.0f}",
    }
