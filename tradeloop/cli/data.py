"""``tradeloop data``: import, validate, resample and list bars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from tradeloop.bars.importer import SeriesReport, import_file
from tradeloop.bars.resample import resample_bars
from tradeloop.bars.schema import Timeframe
from tradeloop.bars.store import BarStore
from tradeloop.bars.symbols import SymbolTable
from tradeloop.cli.output import Output, fail_on_errors, table
from tradeloop.errors import UnusableFile

app = typer.Typer(help="Import, validate, resample and list market bars.", no_args_is_help=True)

PathsArg = Annotated[list[Path], typer.Argument(help="CSV or Parquet files of bars.", show_default=False)]
SymbolOpt = Annotated[
    str | None, typer.Option("--symbol", help="Symbol for every file (beats columns and names).")
]
TimeframeOpt = Annotated[str | None, typer.Option("--timeframe", help="Timeframe, e.g. 1h (else inferred).")]


def _report_table(reports: list[SeriesReport], title: str):
    """One row per series; the JSON report (``--json``) also has duplicates and the longest gap."""
    rows = []
    for r in reports:
        quarantined = ", ".join(f"{k}={v}" for k, v in r.quarantined.items()) or "-"
        rows.append(
            (
                f"{r.symbol}:{r.timeframe}",
                r.rows_read,
                r.stored,
                r.already_stored,
                quarantined,
                f"{r.gaps}/{r.missing_bars}",
                r.zero_volume,
            )
        )
    columns = ("series", "read", "stored", "known", "quarantined", "gaps/missing", "zero vol")
    return table(title, columns, rows)


def _run(
    ctx: typer.Context, paths: list[Path], symbol: str | None, timeframe: str | None, *, store: bool
) -> None:
    out: Output = ctx.obj
    reports: list[SeriesReport] = []
    failures: list[dict[str, str]] = []
    with fail_on_errors(out):
        if timeframe:
            Timeframe.parse(timeframe)
        for path in out.track(paths, "importing" if store else "validating"):
            try:
                reports += import_file(path, out.settings, symbol=symbol, timeframe=timeframe, store=store)
            except UnusableFile as exc:
                failures.append({"file": str(path), "error": exc.reason})
    for failure in failures:
        out.error(f"{failure['file']}: {failure['error']}")
    for r in reports:
        if not r.usable and not r.stored:
            out.error(
                f"{r.source}: no valid bars for {r.symbol}:{r.timeframe} (all {r.rows_read} rows quarantined)"
            )
    usable = sum(r.usable if store else r.rows_read - sum(r.quarantined.values()) for r in reports)
    out.emit(
        {"reports": [r.to_dict() for r in reports], "errors": failures, "usable_bars": usable},
        table=_report_table(reports, "import" if store else "validation") if reports else None,
    )
    if usable == 0:
        raise typer.Exit(2)


@app.command("import")
def import_(
    ctx: typer.Context, paths: PathsArg, symbol: SymbolOpt = None, timeframe: TimeframeOpt = None
) -> None:
    """Validate bar files and store their clean bars; rejected bars go to quarantine."""
    _run(ctx, paths, symbol, timeframe, store=True)


@app.command()
def validate(
    ctx: typer.Context, paths: PathsArg, symbol: SymbolOpt = None, timeframe: TimeframeOpt = None
) -> None:
    """Run the import checks and print the report; stores nothing."""
    _run(ctx, paths, symbol, timeframe, store=False)


def _sources(
    store: BarStore, target: Timeframe, source: Timeframe | None, symbols: list[str] | None
) -> dict[str, Timeframe]:
    """Per symbol, the stored timeframe to build ``target`` from (``source`` when given)."""
    chosen: dict[str, Timeframe] = {}
    for info in store.series():
        tf = Timeframe.parse(info.timeframe)
        if symbols and info.symbol not in symbols:
            continue
        if source is not None:
            if tf == source:
                chosen[info.symbol] = tf
            continue
        divides = tf.delta < target.delta and target.delta % tf.delta == pd.Timedelta(0)
        if divides and (info.symbol not in chosen or tf.delta > chosen[info.symbol].delta):
            chosen[info.symbol] = tf
    return chosen


@app.command()
def resample(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Target timeframe, e.g. 4h.")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Source timeframe (default: the coarsest stored one that divides --to)."),
    ] = None,
    symbol: Annotated[list[str] | None, typer.Option("--symbol", help="Only these symbols.")] = None,
) -> None:
    """Build complete higher-timeframe bars from stored bars and store them."""
    out: Output = ctx.obj
    with fail_on_errors(out):
        target = Timeframe.parse(to)
        source_tf = Timeframe.parse(from_) if from_ else None
        store = BarStore(out.settings)
        symbols = SymbolTable(out.settings)
        chosen = _sources(store, target, source_tf, symbol)
        results = []
        for sym in out.track(sorted(chosen), f"resampling to {target}"):
            tf = chosen[sym]
            bars = resample_bars(store.read(sym, tf.name), tf, target, symbols.get(sym).asset_class)
            merged = store.merge(bars, sym, target)
            results.append(
                {
                    "series": f"{sym}:{target}",
                    "from": tf.name,
                    "complete_bars": len(bars),
                    "stored": len(merged.new),
                    "already_stored": merged.identical,
                    "conflicts": len(merged.conflicts),
                }
            )
    if not results:
        out.error(f"no stored series can be resampled to {to}")
        raise typer.Exit(2)
    out.emit(results, table=table(f"resample → {to}", list(results[0]), [r.values() for r in results]))


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Stored series with their ranges and row counts."""
    out: Output = ctx.obj
    series = list(BarStore(out.settings).series())
    rows = [
        {
            "series": f"{s.symbol}:{s.timeframe}",
            "rows": s.rows,
            "first": s.first.isoformat(),
            "last": s.last.isoformat(),
        }
        for s in series
    ]
    out.emit(
        rows,
        table=table("stored series", ("series", "rows", "first", "last"), [r.values() for r in rows]),
        lines=[] if rows else ["no series stored yet: run `tradeloop data import FILE`"],
    )
