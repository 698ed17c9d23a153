"""``tradeloop features``: build offline features and verify batch/streaming parity."""

from __future__ import annotations

import contextlib
import shlex
import sys
from datetime import datetime
from typing import Annotated

import pandas as pd
import typer

from tradeloop.bars.schema import Timeframe, parse_series_id, validate_symbol
from tradeloop.bars.store import BarStore
from tradeloop.cli.output import Output, fail_on_errors, table
from tradeloop.errors import InvalidInput, UnknownSeries
from tradeloop.features import CHANNELS, WINDOW
from tradeloop.features.offline import build_series
from tradeloop.features.parity import TOLERANCE, replay
from tradeloop.features.recent import sync_windows

app = typer.Typer(help="Offline features and batch/streaming parity.", no_args_is_help=True)


def _selected(out: Output, wanted: list[str] | None) -> list[tuple[str, str]]:
    stored = [(s.symbol, s.timeframe) for s in BarStore(out.settings).series()]
    if not wanted:
        return stored
    chosen = [parse_series_id(w) for w in wanted]
    for sym, tf in chosen:
        if (sym, tf) not in stored:
            raise UnknownSeries(f"{sym}:{tf}", "no stored bars; run `tradeloop data import` first")
    return chosen


@app.command()
def build(
    ctx: typer.Context,
    series: Annotated[
        list[str] | None, typer.Option("--series", help="SYMBOL:TF, repeatable (default: all).")
    ] = None,
) -> None:
    """Write offline feature Parquet for every stored series."""
    out: Output = ctx.obj
    with fail_on_errors(out):
        targets = _selected(out, series)
        if not targets:
            raise UnknownSeries("*", "no series stored; run `tradeloop data import` first")
        built = [build_series(out.settings, sym, tf) for sym, tf in out.track(targets, "features")]
    rows = [{"series": b.series_id, "rows": b.rows, "path": str(b.path)} for b in built]
    out.emit(rows, table=table("offline features", ("series", "rows", "path"), [r.values() for r in rows]))


@app.command()
def verify(
    ctx: typer.Context,
    series: Annotated[
        list[str] | None, typer.Option("--series", help="SYMBOL:TF, repeatable (default: all).")
    ] = None,
) -> None:
    """Replay each series through the streaming path; fail if it differs from batch by > 1e-5."""
    out: Output = ctx.obj
    with fail_on_errors(out):
        targets = _selected(out, series)
        if not targets:
            raise UnknownSeries("*", "no series stored; run `tradeloop data import` first")
        store = BarStore(out.settings)
        results = []
        for sym, tf in out.track(targets, "replaying"):
            parity = replay(store.read(sym, tf))
            results.append(
                {
                    "series": f"{sym}:{tf}",
                    "rows": parity.rows,
                    "max_rel_diff": parity.max_rel_diff,
                    "worst_feature": parity.worst_feature,
                    "worst_ts": parity.worst_ts,
                    "ok": parity.ok,
                }
            )
    failed = [r["series"] for r in results if not r["ok"]]
    rows = [
        (r["series"], r["rows"], f"{r['max_rel_diff']:.3g}", r["worst_feature"], "ok" if r["ok"] else "FAIL")
        for r in results
    ]
    out.emit(
        {"tolerance": TOLERANCE, "series": results, "ok": not failed},
        table=table(
            f"batch vs streaming (tolerance {TOLERANCE:g} after warm-up)",
            ("series", "rows", "max rel diff", "feature", "status"),
            rows,
        ),
    )
    if failed:
        out.error(f"parity above {TOLERANCE:g} for {', '.join(failed)}")
        raise typer.Exit(1)


# --- Feast feature store: apply, materialize, online reads (adapter: tradeloop.feature_store) ---


def _utc(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError as exc:
        raise InvalidInput(name, f"{value!r} is not a date/time") from exc
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


@app.command()
def env(ctx: typer.Context) -> None:
    """Print `export` lines so the `feast` CLI opens the same stores (eval "$(tradeloop features env)")."""
    from tradeloop import feature_store  # imports Feast: only when a store command runs

    out: Output = ctx.obj
    values = feature_store.feast_environment(out.settings)
    out.emit(values, lines=[f"export {k}={shlex.quote(v)}" for k, v in values.items()])


@app.command()
def apply(ctx: typer.Context) -> None:
    """Register feature_repo/ (entity, sources, views, service) in the Feast registry."""
    from tradeloop import feature_store  # imports Feast: only when a store command runs

    out: Output = ctx.obj
    with fail_on_errors(out):
        names = feature_store.apply(out.settings)
    out.emit({"applied": names}, lines=[f"applied {n}" for n in names])


@app.command()
def materialize(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option("--start", help="Start (ISO time, UTC).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="End, an ISO time in UTC (default: now).")] = None,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="From the last materialization to --end (the default).")
    ] = False,
) -> None:
    """Load offline features (and recent windows) into the online store.

    With no options it is incremental up to now: whatever is new since the last run.
    """
    from tradeloop import feature_store  # imports Feast: only when a store command runs

    out: Output = ctx.obj
    with fail_on_errors(out):
        if incremental and start is not None:
            raise InvalidInput("start", "give either --start [--end] or --incremental, not both")
        incremental = start is None
        windows = sync_windows(out.settings)
        store = feature_store.open_store(out.settings)
        begin, finish = _utc(start, "start"), _utc(end, "end")
        with contextlib.redirect_stdout(sys.stderr):  # Feast prints progress; stdout stays ours
            feature_store.materialize(store, start=begin, end=finish)
    data = {"start": start, "end": end, "incremental": incremental, "windows": windows}
    out.emit(data, lines=[f"materialized {len(windows)} series into the online store"])


@app.command()
def get(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTCUSDT.")],
    timeframe: Annotated[str, typer.Argument(help="Timeframe, e.g. 1h.")],
) -> None:
    """Print the online features of one series and their age in seconds."""
    from tradeloop import feature_store  # imports Feast: only when a store command runs

    out: Output = ctx.obj
    with fail_on_errors(out):
        sid = f"{validate_symbol(symbol)}:{Timeframe.parse(timeframe).name}"
        row = feature_store.read_online(feature_store.open_store(out.settings), [sid])[0]
    window = row.window
    data = {
        "series": sid,
        "as_of": row.event_ts,
        "age_s": row.age_s(),
        "window_as_of": row.window_ts,
        "window_shape": [WINDOW, len(CHANNELS)] if window is not None else None,
        "values": row.values,
        "window": window.tolist() if window is not None else None,
    }
    age = f"{row.age_s():.0f}" if row.event_ts is not None else "n/a"
    rows = [(k, "" if v is None else f"{v:.6g}") for k, v in row.values.items()]
    out.emit(
        data,
        table=table(f"{sid} online features", ("feature", "value"), rows),
        lines=[
            f"as of {row.event_ts} (age {age} s)",
            f"window: {WINDOW}×{len(CHANNELS)} float32, as of {row.window_ts}",
        ],
    )
