"""The ``tradeloop`` command: global options, and the sub-commands of each stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tradeloop.cli import data, demo, features, ingest, models, monitor, report, retrain, serve, train
from tradeloop.cli.output import Output
from tradeloop.config import Settings

app = typer.Typer(
    name="tradeloop",
    help="Market-prediction models: data, features, training, serving and monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(models.app, name="models")
app.add_typer(monitor.app, name="monitor")
app.command("train")(train.train)
app.command("retrain")(retrain.retrain)
app.command(name="ingest")(ingest.ingest)
app.command("serve")(serve.serve)
app.command("predict")(serve.predict)
app.command("demo")(demo.demo)
app.command("report")(report.report)


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="TRADELOOP_HOME", help="State directory (default: ./.tradeloop)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
) -> None:
    # MLflow's per-download tqdm bars would bury the command's own output (users may override).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ctx.obj = Output(settings=Settings.load(home), json=json_output)


if __name__ == "__main__":
    app()
