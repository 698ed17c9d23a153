"""``tradeloop monitor``: drift and live-performance checks, and the trigger that retrains.

``check`` runs one check (``services.monitor.check``), writes the HTML report, and with
``--dispatch`` sends GitHub's ``repository_dispatch`` when a trigger fires (``--dry-run`` prints
the request instead). Exit 0: no trigger; :data:`TRIGGERED`: a trigger fired. ``serve`` checks
every ``--interval`` seconds and exposes the gauges on ``/metrics``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from tradeloop.cli.output import Output, fail_on_errors, table

app = typer.Typer(help="Drift and live-performance monitor.", no_args_is_help=True)

TRIGGERED = 10  # exit code of `monitor check` when a trigger fired

UriOpt = Annotated[
    str | None, typer.Option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")
]
WindowOpt = Annotated[int, typer.Option("--window-bars", help="Newest feature rows per series to check.")]
KOpt = Annotated[int, typer.Option("--consecutive", help="Breaching checks in a row before a trigger (k).")]
CooldownOpt = Annotated[float, typer.Option("--cooldown", help="Seconds after a trigger before the next.")]
DispatchOpt = Annotated[
    bool, typer.Option("--dispatch", help="Send repository_dispatch when a trigger fires.")
]
PsiOpt = Annotated[float, typer.Option("--psi", help="PSI a drifting feature reaches.")]
KsOpt = Annotated[
    float, typer.Option("--ks-alpha", help="Corrected KS p-value below which a change is significant.")
]
W1Opt = Annotated[float, typer.Option("--wasserstein", help="Wasserstein/σ reported as a breach.")]
DryOpt = Annotated[
    bool, typer.Option("--dry-run", help="Build the dispatch request and print it; send nothing.")
]


def _config(
    window_bars: int,
    consecutive: int,
    cooldown: float,
    mlflow_uri: str | None,
    thresholds: tuple[float, float, float] = (0.2, 0.01, 0.1),
) -> Any:
    from services.monitor.check import MonitorConfig
    from tradeloop.drift import DriftThresholds

    psi, ks_alpha, wasserstein = thresholds
    return MonitorConfig(
        window_bars=window_bars,
        consecutive=consecutive,
        cooldown_s=cooldown,
        mlflow_uri=mlflow_uri,
        thresholds=DriftThresholds(psi=psi, ks_alpha=ks_alpha, wasserstein=wasserstein),
    )


def _run(out: Output, config: Any, *, dispatch: bool, dry_run: bool) -> tuple[Any, dict[str, Any] | None]:
    from services.monitor.check import run_check
    from services.monitor.github import dispatch as send
    from services.monitor.report import write_report

    result = run_check(out.settings, config)
    write_report(out.settings, result, config.window_bars)
    sent = None
    if result.fired and (dispatch or dry_run):
        sent = send(result.fired, result.payload(), dry_run=dry_run or not dispatch).to_dict()
    return result, sent


@app.command()
def check(
    ctx: typer.Context,
    dispatch: DispatchOpt = False,
    dry_run: DryOpt = False,
    window_bars: WindowOpt = 336,
    consecutive: KOpt = 3,
    cooldown: CooldownOpt = 86400.0,
    psi: PsiOpt = 0.2,
    ks_alpha: KsOpt = 0.01,
    wasserstein: W1Opt = 0.1,
    mlflow_uri: UriOpt = None,
) -> None:
    """One check against the champion's reference; exit 10 when a retrain trigger fired."""
    out: Output = ctx.obj
    with fail_on_errors(out):
        config = _config(window_bars, consecutive, cooldown, mlflow_uri, (psi, ks_alpha, wasserstein))
        result, sent = _run(out, config, dispatch=dispatch, dry_run=dry_run)
    rows = [
        (
            sid,
            "yes" if e["drifted"] else "no",
            f"{e['max_psi']:.3f}",
            ", ".join(e["features"]) or "-",
            e["rows"],
        )
        for sid, e in result.series.items()
    ]
    perf = result.performance
    lines = [
        f"prediction drift: {result.predictions}",
        f"live accuracy {perf['accuracy']} on {perf['labelled']} labelled answers "
        f"(walk-forward {perf['baseline_accuracy']}), degraded: {perf['degraded']}",
        f"breaching: {result.breaching}; consecutive: {result.consecutive}",
        f"decision: {'TRIGGER ' + result.fired if result.fired else 'no trigger'}"
        + (f" ({result.suppressed})" if result.suppressed else ""),
        f"report: {out.settings.home / 'monitor' / 'report.html'}",
    ]
    if sent is not None:
        lines.append(f"dispatch ({'sent' if sent['sent'] else 'dry run'}): {sent['request']}")
    out.emit(
        result.to_dict() | {"dispatch": sent},
        table=table(
            f"drift against champion v{result.champion}",
            ("series", "drifted", "max PSI", "features", "rows"),
            rows,
        ),
        lines=lines,
    )
    if result.fired:
        raise typer.Exit(TRIGGERED)


@app.command()
def serve(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between checks.")] = 300.0,
    port: Annotated[int, typer.Option("--port", help="Port of /metrics.")] = 9090,
    host: Annotated[str, typer.Option("--host", help="Bind address of /metrics.")] = "127.0.0.1",
    dispatch: DispatchOpt = False,
    window_bars: WindowOpt = 336,
    consecutive: KOpt = 3,
    cooldown: CooldownOpt = 86400.0,
    mlflow_uri: UriOpt = None,
) -> None:
    """Check periodically and serve the gauges on /metrics (Ctrl-C or SIGTERM stops it)."""
    import signal

    from prometheus_client import start_http_server

    from services.monitor.metrics import publish

    out: Output = ctx.obj
    config = _config(window_bars, consecutive, cooldown, mlflow_uri)
    server, thread = start_http_server(port, addr=host)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    out.errors.print(f"monitor: /metrics on http://{host}:{port}, a check every {interval:g} s")
    try:
        while not stop["now"]:
            try:
                result, _ = _run(out, config, dispatch=dispatch, dry_run=False)
                publish(result)
                out.errors.print(f"check: fired={result.fired} breaching={result.breaching}")
            except Exception as exc:  # one failed check must not stop the monitor: log and retry
                out.error(f"check failed: {type(exc).__name__}: {exc}")
            deadline = time.monotonic() + interval
            while not stop["now"] and time.monotonic() < deadline:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        thread.join(timeout=5)
