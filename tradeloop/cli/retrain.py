"""``tradeloop retrain``: the retrain loop's one command (drift or degraded accuracy → here).

It trains on everything stored — bars imported with ``data import`` and bars that arrived live
through ``tradeloop ingest`` since the champion was trained — evaluates, runs the promotion gate
with ``--promote`` semantics, and writes a markdown summary for ``$GITHUB_STEP_SUMMARY``. The exit
code tells the workflow what happened: 0 promoted, :data:`KEPT` when the champion was kept (the
run itself succeeded), 2/3/1 for bad input / registry or store unavailable / anything else. A
running predictor picks the new champion up through its hot reload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tradeloop.cli.output import Output, fail_on_errors
from tradeloop.cli.train import (
    CostOpt,
    GateMetricsOpt,
    PresetOpt,
    SharpeOpt,
    UriOpt,
    WorkersOpt,
    emit_result,
    train_and_gate,
)

__all__ = ["KEPT", "retrain", "summary_markdown"]

KEPT = 10  # exit code: the run succeeded and the champion was kept


def summary_markdown(reason: str, payload: dict[str, Any], evaluation_md: str, champion_before: str) -> str:
    """The job summary: why it ran, what was trained on, the numbers, and the gate's decision."""
    decision = payload["decision"]
    verdict = "**promoted to champion**" if payload["promoted"] else "**kept the champion**"
    lines = [
        f"## tradeloop retrain — {verdict}",
        "",
        f"- reason: `{reason}`",
        f"- registered: v{payload['version']} (champion before: {champion_before})",
        f"- gate ({decision['basis']}): {decision['reason']}",
        "",
        *(f"  - {'✅' if c['passed'] else '❌'} {c['detail']}" for c in decision["checks"]),
        "",
        evaluation_md.replace("# Walk-forward evaluation", "### Walk-forward evaluation"),
    ]
    return "\n".join(lines) + "\n"


def retrain(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", help="Why this retrain runs (recorded in the summary).")],
    preset: PresetOpt = "fast",
    workers: WorkersOpt = 2,
    cost: CostOpt = None,
    gate_on_sharpe: SharpeOpt = False,
    gate_metrics: GateMetricsOpt = None,
    summary: Annotated[
        Path | None,
        typer.Option("--summary", envvar="GITHUB_STEP_SUMMARY", help="Append the markdown summary here."),
    ] = None,
    mlflow_uri: UriOpt = None,
) -> None:
    """Retrain on all stored bars, gate against the champion, promote only a better model."""
    out: Output = ctx.obj
    with fail_on_errors(out):
        from tradeloop.registry import Registry

        before = Registry(out.settings, mlflow_uri).alias("champion")
        result, version, decision = train_and_gate(
            out,
            preset=preset,
            symbols=None,
            timeframes=None,
            workers=workers,
            gpu=False,
            cost=cost,
            promote=True,
            gate_on_sharpe=gate_on_sharpe,
            mlflow_uri=mlflow_uri,
            gate_metrics=gate_metrics,
        )
    payload = emit_result(out, result, version, decision)
    if summary is not None:
        text = summary_markdown(
            reason,
            payload,
            (result.report_dir / "report.md").read_text(),
            f"v{before.version}" if before else "none",
        )
        summary.parent.mkdir(parents=True, exist_ok=True)
        with summary.open("a", encoding="utf-8") as fh:
            fh.write(text)
    if not payload["promoted"]:
        raise typer.Exit(KEPT)
