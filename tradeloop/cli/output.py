"""How the CLI talks: rich tables and progress bars for people, bare JSON with ``--json``.

Commands build plain data and hand it to :class:`Output`; nothing else prints. With ``--json``
stdout carries exactly one JSON document and progress bars are off.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tradeloop.config import Settings
from tradeloop.errors import TradeloopError, exit_code

__all__ = ["Output", "fail_on_errors", "progress_bar", "table"]

T = TypeVar("T")


@dataclass
class Output:
    """The settings and output mode of one CLI invocation (kept in ``typer.Context.obj``)."""

    settings: Settings
    json: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=False))
    errors: Console = field(default_factory=lambda: Console(stderr=True))

    def track(self, items: Sequence[T], description: str) -> Iterator[T]:
        """Iterate ``items`` under a progress bar (silent with ``--json``)."""
        if self.json or not items:
            yield from items
            return
        with progress_bar(self.errors) as progress:
            task = progress.add_task(description, total=len(items))
            for item in items:
                progress.update(task, description=f"{description} {item}")
                yield item
                progress.advance(task)

    def emit(self, data: Any, *, table: Table | None = None, lines: Iterable[str] = ()) -> None:
        """Print ``data`` as JSON in ``--json`` mode, else the table and lines."""
        if self.json:
            sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")
            return
        if table is not None:
            self.console.print(table)
        for line in lines:
            self.console.print(line, highlight=False)

    def error(self, message: str) -> None:
        """One-line error on stderr (in both modes, so JSON on stdout stays parseable)."""
        self.errors.print(f"[bold red]error:[/] {message}", highlight=False)


def progress_bar(console: Console) -> Progress:
    """The progress bar every long stage shows: what it is doing, the bar, done/total, elapsed."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, transient=True)


@contextmanager
def fail_on_errors(out: Output) -> Iterator[None]:
    """Turn a :class:`TradeloopError` into its one-line message and exit code."""
    try:
        yield
    except TradeloopError as exc:
        out.error(str(exc))
        raise typer.Exit(exit_code(exc)) from exc


_TEXT = {
    "series",
    "file",
    "reason",
    "feature",
    "ts",
    "predictor",
    "output",
    "path",
    "detail",
    "features",
    "quarantined",
}
_WRAPS = {
    "reason",
    "detail",
    "features",
    "path",
    "file",
    "quarantined",
}  # long free text may wrap; names never do


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table with right-aligned numbers that fits an 80-column terminal.

    Names (series, features, predictors) and numbers are never wrapped or cut; only free-text
    columns (reasons, details, paths) wrap when the terminal is narrow.
    """
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for name in columns:
        t.add_column(
            name,
            justify="left" if name in _TEXT else "right",
            no_wrap=name not in _WRAPS,
            overflow="fold",
        )
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t
