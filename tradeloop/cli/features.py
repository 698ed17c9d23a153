"""``tradeloop features``: build offline features and verify batch/streaming parity."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeloop.bars.schema import parse_series_id
from tradeloop.bars.store import BarStore
from tradeloop.cli.output import Output, fail_on_errors, table
from tradeloop.errors import UnknownSeries
from tradeloop.features.offline import build_series
from tradeloop.features.parity import TOLERANCE, replay

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
        list[str] | None, typer.Option("--series", help="SYMBOL:TF (repeatable) [default: all].")
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
        list[str] | None, typer.Option("--series", help="SYMBOL:TF (repeatable) [default: all].")
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
