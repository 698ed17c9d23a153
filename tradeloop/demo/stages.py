"""The eight stages of ``tradeloop demo``, each a function of the context returning its summary.

Every stage can run again after a crash: imports and feature builds skip what is stored, ingest
refuses exact repeats as duplicates, training registers a new version, and the serving stages
only read. What a stage measured goes to ``HOME/demo/*.json`` for the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rich.table import Table

from tradeloop.bars.store import write_text_atomic
from tradeloop.cli.output import progress_bar
from tradeloop.demo.context import DemoContext, DemoStageFailed
from tradeloop.demo.data import write_inputs
from tradeloop.errors import TradeloopError

__all__ = ["STAGES", "Stage"]

SYMBOL, TIMEFRAME = "EURUSD", "1h"
RELOAD_TIMEOUT_S = 120.0

Stage = tuple[str, str, Callable[[DemoContext], dict[str, Any]], bool]  # key, title, run, needs server


def _write_json(ctx: DemoContext, name: str, data: Any) -> None:
    ctx.settings.demo_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(data, indent=2, default=str), ctx.settings.demo_dir / name)


def _champion(ctx: DemoContext) -> str | None:
    from tradeloop.registry import CHAMPION, Registry

    found = Registry(ctx.settings).alias(CHAMPION)
    return found.version if found else None


# -- 1 -------------------------------------------------------------------------------------------
def import_bars(ctx: DemoContext) -> dict[str, Any]:
    """Real GOOG daily and EURUSD hourly bars, validated; EURUSD's newest bars are held back."""
    inputs = write_inputs(ctx.settings.demo_dir / "input", ctx.plan)
    ctx.run("data", "import", str(inputs.goog))
    ctx.run("data", "import", str(inputs.eurusd))
    ctx.run("data", "resample", "--to", "4h", "--from", "1h")
    ctx.run("data", "list")
    held = ctx.plan.stream_rows
    ctx.console.print(f"held back: the newest {held} EURUSD 1h bars arrive later through `tradeloop ingest`")
    return {"goog_rows": ctx.plan.goog_rows, "eurusd_rows": ctx.plan.eurusd_import, "held_back": held}


# -- 2 -------------------------------------------------------------------------------------------
def build_features(ctx: DemoContext) -> dict[str, Any]:
    """Batch features, their streaming parity check, the Feast repository and the online store."""
    ctx.run("features", "build")
    ctx.run("features", "verify")
    ctx.run("features", "apply")
    ctx.run("features", "materialize")
    ctx.run("features", "get", SYMBOL, TIMEFRAME)
    return {}


# -- 3 -------------------------------------------------------------------------------------------
def train_first(ctx: DemoContext) -> dict[str, Any]:
    """Ray Train (fast preset), registration, and the gate's decision on a first champion."""
    ctx.run("train", "--preset", "fast", "--promote")
    champion = _champion(ctx)
    manual = champion is None
    if manual:
        ctx.console.print(
            "[bold yellow]MANUAL:[/] the first model did not earn promotion (see the gate above); "
            "the demo promotes it by hand so the later stages have a model to serve"
        )
        ctx.run(
            "models",
            "promote",
            "challenger",
            "--reason",
            "demo: the first model did not earn promotion; served by hand so later stages have a champion",
        )
        champion = _champion(ctx)
    if champion is None:
        raise DemoStageFailed("no champion after training and promotion")
    ctx.run("models", "list")
    return {"champion": champion, "manual": manual}


# -- 4 -------------------------------------------------------------------------------------------
def _latency(samples: list[float]) -> dict[str, Any]:
    ms = np.asarray(samples) * 1e3
    return {
        "n": len(samples),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "samples_ms": [round(float(v), 4) for v in ms],
    }


def serve_and_call(ctx: DemoContext) -> dict[str, Any]:
    """One answer over v1 REST, v2 REST and v2 gRPC, then latency over repeated calls of each."""
    from tradeloop.cli.serve import shown

    assert ctx.client is not None
    assert ctx.server is not None
    calls = {"v1_rest": ctx.client.v1, "v2_rest": ctx.client.v2, "v2_grpc": ctx.client.grpc}
    answers = {name: call(SYMBOL, TIMEFRAME) for name, call in calls.items()}
    table = Table(title=f"{SYMBOL}:{TIMEFRAME} from {ctx.server.url} and grpc://{ctx.server.grpc_url}")
    table.add_column("output", justify="left")
    for name in calls:
        table.add_column(name.replace("_", " "), justify="right", no_wrap=True)
    values = {name: shown(a) | {"as_of": a.as_of[:16].replace("T", " ")} for name, a in answers.items()}
    for key in values["v1_rest"]:
        table.add_row(key, *(values[name][key] for name in calls))
    ctx.console.print(table)
    probs = {a.prob_up for a in answers.values()}
    agree = max(probs) - min(probs) < 1e-6 and len({a.model_version for a in answers.values()}) == 1
    ctx.console.print(f"the three protocols agree: {'yes' if agree else '[bold red]NO[/]'}")
    if not agree:
        raise DemoStageFailed("REST v1, REST v2 and gRPC answers differ")

    samples: dict[str, list[float]] = {name: [] for name in calls}
    n = ctx.options.latency_calls
    with progress_bar(ctx.console) as progress:
        task = progress.add_task("timing calls", total=n * len(calls))
        for name, call in calls.items():
            progress.update(task, description=f"timing {name}")
            for _ in range(n):
                start = time.perf_counter()
                call(SYMBOL, TIMEFRAME)
                samples[name].append(time.perf_counter() - start)
                progress.advance(task)
    latency = {name: _latency(s) for name, s in samples.items()}
    table = Table(title=f"client-side latency, {n} sequential calls each (one series)")
    for column in ("protocol", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "protocol" else "right")
    for name, stats in latency.items():
        table.add_row(name, *(f"{stats[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms")))
    ctx.console.print(table)
    measured = datetime.now(UTC).isoformat(timespec="seconds")
    _write_json(
        ctx,
        "serving.json",
        {
            "engine": "kserve",
            "measured_at": measured,
            "calls": latency,
            "answers": {k: a.to_dict() for k, a in answers.items()},
        },
    )
    return {"answers": {k: a.to_dict() for k, a in answers.items()}, "agree": agree}


# -- 5 -------------------------------------------------------------------------------------------
def stream_bars(ctx: DemoContext) -> dict[str, Any]:
    """The held-back bars through ``tradeloop ingest``, asking the server after each chunk."""
    assert ctx.client is not None
    chunks = write_inputs(ctx.settings.demo_dir / "input", ctx.plan).stream
    rows: list[dict[str, Any]] = []
    ingested = 0
    first = ctx.client.v2(SYMBOL, TIMEFRAME)
    rows.append(_stream_row(0, first))
    with progress_bar(ctx.console) as progress:
        task = progress.add_task("streaming bars", total=len(chunks))
        for path in chunks:
            ctx.run("ingest", str(path), capture=True)
            ingested += sum(1 for _ in path.open()) - 1
            rows.append(_stream_row(ingested, ctx.client.v2(SYMBOL, TIMEFRAME)))
            progress.advance(task)
    table = Table(title=f"{SYMBOL}:{TIMEFRAME} answers while bars arrive (historical replay)")
    for column in ("bars in", "as_of", "feature age", "prob_up", "signal", "model"):
        table.add_column(column, justify="right")
    for row in rows:
        age = "-" if row["feature_age_s"] is None else f"{row['feature_age_s'] / 86400:,.1f} d"
        table.add_row(
            str(row["bars_ingested"]),
            row["as_of"][:16],
            age,
            f"{row['prob_up']:.4f}",
            str(row["signal"]),
            row["model_version"],
        )
    ctx.console.print(table)
    ctx.console.print(
        "[dim]feature age is measured against today's clock: these are 2017-18 bars replayed now[/]"
    )
    _write_json(ctx, "stream.json", rows)
    changed = len({r["as_of"] for r in rows})
    if changed < 2:
        raise DemoStageFailed("as_of did not move while bars were ingested")
    return {"bars": ingested, "as_of_first": rows[0]["as_of"], "as_of_last": rows[-1]["as_of"]}


def _stream_row(ingested: int, answer: Any) -> dict[str, Any]:
    return {"bars_ingested": ingested, "ts": answer.as_of} | answer.to_dict()


# -- 6 -------------------------------------------------------------------------------------------
def monitor(ctx: DemoContext) -> dict[str, Any]:
    """Drift of the newest (streamed) period against the champion's training reference."""
    window = str(ctx.plan.stream_rows)
    args = ("monitor", "check", "--dry-run", "--consecutive", "1", "--window-bars", window)
    result = ctx.run(*args, ok=(0, 10))
    decisions = ctx.settings.home / "monitor" / "decisions.jsonl"
    last = json.loads(decisions.read_text().splitlines()[-1])
    fired = last.get("fired")
    ctx.console.print(
        f"drift decision: {'TRIGGER ' + fired if fired else 'no trigger'}"
        + ("; the dispatch above was a dry run: nothing was sent" if fired else "")
    )
    return {"fired": fired, "exit": result.returncode, "breaching": last.get("breaching")}


# -- 7 -------------------------------------------------------------------------------------------
def retrain(ctx: DemoContext) -> dict[str, Any]:
    """``tradeloop retrain``, the gate's decision, and the running server's hot reload."""
    from tradeloop.registry import Registry

    assert ctx.client is not None
    before = _champion(ctx)
    reason = ctx.checkpoint.get("monitor").get("fired") or "demo: scheduled retrain (no trigger fired)"
    result = ctx.run("retrain", "--reason", reason, "--preset", "fast", ok=(0, 10))
    registry = Registry(ctx.settings)
    newest = max(registry.versions(), key=lambda v: int(v.version))
    promoted_by = "gate" if result.returncode == 0 else "manual"
    if result.returncode == 10:
        ctx.console.print(
            "[bold yellow]MANUAL:[/] the gate kept the champion (see above); "
            f"the demo promotes v{newest.version} by hand to show the server's hot reload"
        )
        ctx.run("models", "promote", newest.version, "--reason", "demo: promoted by hand to show hot reload")
    after = _champion(ctx)
    started = time.monotonic()
    seen, failures = before, 0
    with progress_bar(ctx.console) as progress:
        progress.add_task(f"waiting for the server to load v{after}", total=None)
        while seen != after and time.monotonic() - started < RELOAD_TIMEOUT_S:
            try:
                seen = ctx.client.v2(SYMBOL, TIMEFRAME).model_version
            except TradeloopError:  # counted: a reload must not fail requests
                failures += 1
            time.sleep(0.1)
    waited = time.monotonic() - started
    if seen != after:
        raise DemoStageFailed(
            f"the server still answers with v{seen} {RELOAD_TIMEOUT_S:.0f} s after v{after} was promoted"
        )
    ctx.console.print(
        f"hot reload: the server's model_version went v{before} → v{seen} "
        f"({waited:.1f} s after the promotion command returned; {failures} failed requests)"
    )
    return {
        "reason": reason,
        "decision": "promote" if result.returncode == 0 else "keep",
        "promoted_by": promoted_by,
        "registered": newest.version,
        "before": before,
        "after": after,
        "reload_s": round(waited, 2),
        "failed_requests": failures,
    }


# -- 8 -------------------------------------------------------------------------------------------
def report(ctx: DemoContext) -> dict[str, Any]:
    """The one-file HTML report of everything above."""
    from tradeloop.report import build_report

    path = build_report(ctx.settings)
    ctx.console.print(f"report: [bold]{path}[/]")
    return {"path": str(path)}


STAGES: tuple[Stage, ...] = (
    ("import", "Import and validate real bars", import_bars, False),
    ("features", "Features, Feast apply and materialize", build_features, False),
    ("train", "Train (Ray, fast preset), register, gate", train_first, False),
    ("serve", "Serve: REST v1, REST v2 and gRPC", serve_and_call, True),
    ("stream", "Stream new bars through `tradeloop ingest`", stream_bars, True),
    ("monitor", "Monitor the newer period for drift", monitor, True),
    ("retrain", "Retrain, gate, hot reload", retrain, True),
    ("report", "HTML report", report, False),
)
