"""``tradeloop ingest FILE|-``: land live bars (JSON lines or CSV) in the feature store."""

from __future__ import annotations

import select
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TextIO

import typer

from tradeloop.cli.output import Output, fail_on_errors, table
from tradeloop.errors import DataQualityError, UnusableFile, exit_code

__all__ = ["ingest"]

_SHOWN = 20  # rejections listed in the human-readable report; --json lists all


def _more_ready(stream: TextIO) -> Callable[[], bool]:
    """Whether more input can be read without blocking, so a live pipe is pushed promptly."""

    def ready() -> bool:
        try:
            return bool(select.select([stream], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    return ready


def _json_lines(path: Path) -> bool:
    """A file of JSON objects, one per line (read line by line); anything else is a bar file."""
    with path.open(errors="replace") as fh:
        for line in fh:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def ingest(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="File of bars (JSON lines or CSV), or - for stdin.")],
    symbol: Annotated[str | None, typer.Option(help="Symbol for lines without one.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Timeframe for lines without one.")] = None,
    batch_size: Annotated[int, typer.Option(help="Bars per push (a live pipe pushes sooner).")] = 500,
) -> None:
    """Validate new bars, advance streaming state and push their features online and offline.

    A file is read like ``data import`` reads it (any CSV layout or Parquet; symbol and timeframe
    from options, columns or a SYMBOL_TF file name; timeframe from the bars' spacing); stdin is
    JSON lines or CSV with a header, pushed as lines arrive.

    Rejected bars (malformed, missing field, NaN, out of order, duplicate, conflicting) are
    reported one per line with their reason and quarantined; the valid bars still land. Exit
    status 2 when any bar was rejected other than an exact repeat of an ingested bar.
    """
    from tradeloop.ingest import Ingestor  # imports Feast: only when ingesting

    out: Output = ctx.obj
    with fail_on_errors(out):
        ingestor = Ingestor(out.settings, source=f"ingest:{source}")
        if source == "-":
            report = ingestor.run(
                sys.stdin,
                batch_size=batch_size,
                symbol=symbol,
                timeframe=timeframe,
                more_ready=_more_ready(sys.stdin),
            )
        else:
            path = Path(source)
            if not path.is_file():
                raise UnusableFile(source, "no such file")
            if _json_lines(path):
                with path.open() as stream:
                    report = ingestor.run(stream, batch_size=batch_size, symbol=symbol, timeframe=timeframe)
            else:
                report = ingestor.run_file(path, batch_size=batch_size, symbol=symbol, timeframe=timeframe)
    data = report.to_dict()
    rows = [
        (r.line, r.series_id or "", r.ts or "", r.reason, r.detail[:80]) for r in report.rejected[:_SHOWN]
    ]
    summary = ", ".join(f"{k}={v}" for k, v in report.reasons.items()) or "none"
    out.emit(
        data,
        table=table("rejected bars", ("line", "series", "ts", "reason", "detail"), rows) if rows else None,
        lines=[f"ingested {data['accepted']} bars ({len(report.accepted)} series); rejected: {summary}"],
    )
    serious = [r for r in report.rejected if r.reason != "duplicate_ts"]
    if serious:
        error = DataQualityError(f"{len(serious)} bars rejected")
        out.error(str(error))
        raise typer.Exit(exit_code(error))
