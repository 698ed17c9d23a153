"""``tradeloop models``: list, show, promote and roll back registered bundles."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeloop.cli.output import Output, fail_on_errors, table
from tradeloop.registry import CHAMPION, Registry

app = typer.Typer(help="Registered model bundles (MLflow) and the champion alias.", no_args_is_help=True)

UriOpt = Annotated[
    str | None, typer.Option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")
]


def _registry(ctx: typer.Context, uri: str | None) -> tuple[Output, Registry]:
    out: Output = ctx.obj
    return out, Registry(out.settings, uri)


@app.command("list")
def list_(ctx: typer.Context, mlflow_uri: UriOpt = None) -> None:
    """Every registered version with its aliases and gate decision."""
    out, registry = _registry(ctx, mlflow_uri)
    with fail_on_errors(out):
        versions = registry.versions()
    rows = [
        (
            v.version,
            ",".join(v.aliases) or "-",
            v.tags.get("gate.decision", "-"),
            v.tags.get("gate.challenger.directional_accuracy", "-"),
            v.tags.get("gate.reason", "-"),
        )
        for v in versions
    ]
    out.emit(
        [v.to_dict() for v in versions],
        table=table("tradeloop versions", ("version", "aliases", "gate", "dir acc", "reason"), rows),
    )


@app.command()
def show(ctx: typer.Context, version: str, mlflow_uri: UriOpt = None) -> None:
    """One version: aliases, tags (gate numbers) and run metrics."""
    out, registry = _registry(ctx, mlflow_uri)
    with fail_on_errors(out):
        info = registry.get(version)
        metrics = registry.run_metrics(version)
    rows = [(k, f"{v:.6g}") for k, v in sorted(metrics.items()) if k.startswith(("model.", "persistence."))]
    out.emit(
        info.to_dict() | {"metrics": metrics},
        table=table(
            f"tradeloop v{info.version} ({','.join(info.aliases) or 'no alias'})", ("metric", "value"), rows
        ),
        lines=[f"{k}: {v}" for k, v in sorted(info.tags.items())],
    )


@app.command()
def promote(ctx: typer.Context, version: str, mlflow_uri: UriOpt = None) -> None:
    """Make VERSION champion by hand (recorded as a manual promotion)."""
    out, registry = _registry(ctx, mlflow_uri)
    with fail_on_errors(out):
        registry.promote(version, reason="manual promotion")
        info = registry.alias(CHAMPION)
    out.emit({"champion": info.version if info else None}, lines=[f"champion → v{version}"])


@app.command()
def rollback(ctx: typer.Context, mlflow_uri: UriOpt = None) -> None:
    """Move champion back to the previous champion."""
    out, registry = _registry(ctx, mlflow_uri)
    with fail_on_errors(out):
        before, after = registry.rollback()
    out.emit({"from": before, "champion": after}, lines=[f"champion v{before} → v{after}"])
