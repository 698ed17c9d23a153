"""``tradeloop models``: list, show, promote and roll back registered bundles."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tradeloop.cli.output import Output, fail_on_errors, table
from tradeloop.errors import InvalidInput
from tradeloop.registry import CHAMPION, Registry

app = typer.Typer(help="Registered model bundles (MLflow) and the champion alias.", no_args_is_help=True)

UriOpt = Annotated[
    str | None, typer.Option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")
]


def _registry(ctx: typer.Context, uri: str | None) -> tuple[Output, Registry]:
    out: Output = ctx.obj
    with fail_on_errors(out):
        return out, Registry(out.settings, uri)


def _resolve(registry: Registry, ref: str) -> str:
    """A version number, or the version an alias (``champion``, ``challenger``) points at."""
    if ref.isdigit():
        return ref
    found = registry.alias(ref)
    if found is None:
        raise InvalidInput("version", f"{ref!r} is neither a version number nor a set alias")
    return found.version


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
    """One version (a number or an alias): aliases, tags (gate numbers) and run metrics."""
    out, registry = _registry(ctx, mlflow_uri)
    with fail_on_errors(out):
        version = _resolve(registry, version)
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
def promote(
    ctx: typer.Context,
    version: str,
    reason: Annotated[
        str, typer.Option("--reason", help="Why the gate is overridden (recorded on the version).")
    ] = "manual promotion",
    mlflow_uri: UriOpt = None,
) -> None:
    """Make VERSION (a number or an alias such as ``challenger``) champion by hand, overriding the
    promotion gate; recorded as manual."""
    out, registry = _registry(ctx, mlflow_uri)
    with fail_on_errors(out):
        version = _resolve(registry, version)
        before = registry.alias(CHAMPION)
        changed = registry.promote(version, reason=reason, manual=True)
        info = registry.get(version)
    gate = {k: info.tags[f"gate.{k}"] for k in ("decision", "reason") if f"gate.{k}" in info.tags}
    previous = before.version if before else None
    if changed:
        note = f"MANUAL promotion of v{info.version} overriding the promotion gate"
        note += f" (gate decision: {gate.get('decision', 'none')}"
        note += f" — {gate['reason']})" if "reason" in gate else ")"
        lines = [
            f"[bold yellow]{escape(note)}[/]",
            f"champion v{previous} → v{info.version}" if previous else f"champion → v{info.version}",
        ]
    else:
        note = f"v{info.version} already is the champion: nothing changed, nothing recorded"
        lines = [escape(note)]
    out.emit(
        {
            "champion": info.version,
            "previous": previous,
            "manual": True,
            "changed": changed,
            "by": info.tags.get("promoted.by"),
            "reason": reason,
            "gate": gate,
            "note": note,
        },
        lines=lines,
    )


@app.command()
def rollback(ctx: typer.Context, mlflow_uri: UriOpt = None) -> None:
    """Move champion back to the previous champion."""
    out, registry = _registry(ctx, mlflow_uri)
    with fail_on_errors(out):
        before, after = registry.rollback()
    out.emit({"from": before, "champion": after}, lines=[f"champion v{before} → v{after}"])
