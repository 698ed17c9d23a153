"""``tradeloop train``: train the CNN + XGBoost bundle with Ray, register it, gate it.

Training code (Ray, torch, xgboost) is imported inside the command, so the rest of the CLI starts
fast and works where only the core is installed. Every input check runs before Ray starts.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from tradeloop.cli.output import Output, fail_on_errors, progress_bar, table

__all__ = ["emit_result", "metrics_table", "train", "train_and_gate"]

# The terminal table keeps what fits 80 columns; report.md and --json carry RMSE and hit rate too.
COLUMNS = ("predictor", "dir acc", "IC", "rank IC", "Sharpe", "max DD", "turnover")
_SHOWN = (0, 1, 2, 4, 5, 7)  # of headline_rows' values: acc, IC, rank IC, Sharpe, max DD, turnover


def _split(values: list[str] | None) -> list[str] | None:
    """Accept both ``--symbols A --symbols B`` and ``--symbols A,B``."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def metrics_table(report: dict[str, Any], title: str):
    """The model-vs-baseline table of a walk-forward report."""
    from training.evaluate import headline_rows

    formats = (".3f", ".3f", ".3f", ".2e", ".2f", ".3f", ".3f", ".3f")

    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    rows = [[name, *(fmt(values[i], formats[i]) for i in _SHOWN)] for name, *values in headline_rows(report)]
    return table(title, COLUMNS, rows)


def _run_with_progress(out: Output, run: Any, prepared: Any) -> Any:
    """``training.job.run`` under a progress bar over its steps (CNN and XGBoost per group)."""
    from training.job import steps

    names = steps(prepared)
    if out.json:
        return run(out.settings, prepared)
    with progress_bar(out.errors) as bar:
        task = bar.add_task("training", total=len(names))

        def step(name: str) -> None:
            bar.update(task, completed=names.index(name), description=f"training: {name}")

        result = run(out.settings, prepared, progress=step)
        bar.update(task, completed=len(names))
    return result


def train_and_gate(
    out: Output,
    *,
    preset: str,
    symbols: list[str] | None,
    timeframes: list[str] | None,
    workers: int,
    gpu: bool,
    cost: list[str] | None,
    promote: bool,
    gate_on_sharpe: bool,
    mlflow_uri: str | None,
    gate_metrics: list[str] | None = None,
) -> tuple[Any, Any, Any]:
    """Validate, train, register and gate; (TrainResult, registered version, Decision).

    Raises tradeloop errors (the caller's ``fail_on_errors`` maps them); every input check runs
    before Ray starts.
    """
    from tradeloop.errors import InvalidInput
    from tradeloop.registry import Registry
    from training.gate import GateConfig, register_and_gate
    from training.job import TrainRequest, prepare, run
    from training.presets import get_preset

    request = TrainRequest(
        preset=get_preset(preset, **({"costs_bps": _split(cost)} if cost else {})),
        symbols=_split(symbols),
        timeframes=_split(timeframes),
        workers=workers,
        gpu=gpu,
    )
    config = GateConfig(gate_on_sharpe=gate_on_sharpe)
    if gate_metrics:
        chosen = _split(gate_metrics) or []
        unknown = sorted(set(chosen) - set(config.margins))
        if unknown or not chosen:
            raise InvalidInput(
                "gate-metrics", f"choose from {', '.join(config.margins)}, got {unknown or chosen}"
            )
        config = GateConfig(margins={m: config.margins[m] for m in chosen}, gate_on_sharpe=gate_on_sharpe)
    prepared = prepare(out.settings, request)  # bad input fails here, before Ray starts
    if not out.json:
        out.errors.print(
            f"training {len(prepared.data):,} samples from {len(prepared.data.series)} series "
            f"with {workers} Ray workers…"
        )
    registry = Registry(out.settings, mlflow_uri)
    registry.alias("champion")  # an unreachable registry fails now, not after minutes of training
    result = _run_with_progress(out, run, prepared)
    version, decision = register_and_gate(
        registry,
        result.bundle_dir,
        result.report_dir,
        promote=promote,
        result=result,
        config=config,
    )
    return result, version, decision


def emit_result(out: Output, result: Any, version: Any, decision: Any) -> dict[str, Any]:
    """Print (or return as JSON) the metrics table and the gate's reasoning of a training run."""
    report = result.report
    payload = {
        "version": version.version,
        "aliases": list(version.aliases),
        "decision": decision.to_dict(),
        "promoted": bool(decision.promote) and "champion" in version.aliases,
        "bundle": str(result.bundle_dir),
        "report": str(result.report_dir),
        "metrics": {name: entry["overall"] for name, entry in report["models"].items()},
        "control_at_chance": report["control_at_chance"],
        "criteria": report["criteria"],
        "calibration": report["calibration"],
        "costs_bps": report["context"]["cost_bps"],
        "timings": result.timings,
    }
    verdict = "promoted to champion" if payload["promoted"] else f"not promoted ({decision.reason})"
    out.emit(
        payload,
        table=metrics_table(
            report, f"walk-forward test, {report['rows']:,} rows, {len(report['folds'])} folds"
        ),
        lines=[
            "costs (bps): " + ", ".join(f"{k} {v:g}" for k, v in report["context"]["cost_bps"].items()),
            f"shuffled-label control at chance: {report['control_at_chance']}",
            *(escape(line) for line in decision.lines()),
            f"registered tradeloop v{version.version}: {escape(verdict)}",
            f"report: {result.report_dir / 'report.md'}",
        ],
    )
    return payload


PresetOpt = Annotated[str, typer.Option("--preset", help="fast | balanced | quality.")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Ray Train workers.")]
CostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cost",
        help="Cost per unit of position change, CLASS=BPS (e.g. crypto=10); repeatable. "
        "Defaults: crypto 10, equity 5, fx 1, commodity 3.",
    ),
]
SharpeOpt = Annotated[
    bool, typer.Option("--gate-on-sharpe", help="A first champion must also beat always-long's Sharpe.")
]
GateMetricsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--gate-metrics",
        help="Metrics a challenger must beat the champion on, fold by fold "
        "(default: directional_accuracy,rank_ic,sharpe).",
    ),
]
UriOpt = Annotated[
    str | None, typer.Option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")
]


def train(
    ctx: typer.Context,
    preset: PresetOpt = "fast",
    symbols: Annotated[list[str] | None, typer.Option("--symbols", help="Symbols (default: all).")] = None,
    timeframes: Annotated[
        list[str] | None, typer.Option("--timeframes", help="Timeframes, e.g. 1h,4h (default: all).")
    ] = None,
    workers: WorkersOpt = 2,
    gpu: Annotated[bool, typer.Option("--gpu", help="Train the CNN on GPU workers.")] = False,
    promote: Annotated[bool, typer.Option("--promote", help="Make it champion if the gate agrees.")] = False,
    cost: CostOpt = None,
    gate_on_sharpe: SharpeOpt = False,
    mlflow_uri: UriOpt = None,
) -> None:
    """Train a bundle on the stored series, register it as challenger and run the promotion gate."""
    out: Output = ctx.obj
    with fail_on_errors(out):
        result, version, decision = train_and_gate(
            out,
            preset=preset,
            symbols=symbols,
            timeframes=timeframes,
            workers=workers,
            gpu=gpu,
            cost=cost,
            promote=promote,
            gate_on_sharpe=gate_on_sharpe,
            mlflow_uri=mlflow_uri,
        )
    emit_result(out, result, version, decision)
