"""The demo's input files: real bars the ``backtesting`` package ships, cut into what is imported
up front and what arrives later, bar by bar, through ``tradeloop ingest``.

Files are cut by line, so they keep the source layout (an unnamed date column, capitalised
names): import and ingest read them with the same reader a user's export would meet. Cutting is
deterministic, so a re-run writes identical files and re-imports nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tradeloop.bars.store import write_text_atomic
from tradeloop.errors import UnusableFile

__all__ = ["DemoInputs", "Plan", "package_data", "plan_for", "write_inputs"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How many bars of each source the demo uses (rows counted after the header)."""

    goog_rows: int  # newest daily GOOG bars imported
    eurusd_first: int  # first EURUSD hourly row used
    eurusd_import: int  # EURUSD rows imported up front
    stream_rows: int  # EURUSD rows held back and streamed through ingest afterwards
    chunk: int  # bars per ingest call while streaming


FULL = Plan(goog_rows=2148, eurusd_first=0, eurusd_import=4500, stream_rows=500, chunk=100)
FAST = Plan(goog_rows=1200, eurusd_first=2000, eurusd_import=2700, stream_rows=300, chunk=50)


def plan_for(fast: bool) -> Plan:
    return FAST if fast else FULL


@dataclass(frozen=True, slots=True)
class DemoInputs:
    goog: Path
    eurusd: Path
    stream: tuple[Path, ...]  # chunks in time order, each a CSV with the source header


def package_data() -> Path:
    """The folder of CSV files inside the installed ``backtesting`` package."""
    try:
        import backtesting
    except ImportError as exc:  # pragma: no cover - it is a pinned requirement
        raise UnusableFile(
            "backtesting", "the demo's bars come from the backtesting package: pip install it"
        ) from exc
    folder = Path(backtesting.__file__).parent / "test"
    for name in ("GOOG.csv", "EURUSD.csv"):
        if not (folder / name).is_file():
            raise UnusableFile(str(folder / name), "the backtesting package no longer ships this file")
    return folder


def _lines(path: Path) -> tuple[str, list[str]]:
    header, *rows = path.read_text().splitlines()
    return header, rows


def write_inputs(folder: Path, plan: Plan) -> DemoInputs:
    """Write the demo's files under ``folder`` (atomically; identical on every run)."""
    source = package_data()
    folder.mkdir(parents=True, exist_ok=True)
    header, goog = _lines(source / "GOOG.csv")
    goog_path = folder / "GOOG_1d.csv"
    write_text_atomic("\n".join([header, *goog[-plan.goog_rows :]]) + "\n", goog_path)
    header, eurusd = _lines(source / "EURUSD.csv")
    end = plan.eurusd_first + plan.eurusd_import
    if end + plan.stream_rows > len(eurusd):
        raise UnusableFile(
            str(source / "EURUSD.csv"), f"has {len(eurusd)} bars; the demo needs {end + plan.stream_rows}"
        )
    eurusd_path = folder / "EURUSD_1h.csv"
    write_text_atomic("\n".join([header, *eurusd[plan.eurusd_first : end]]) + "\n", eurusd_path)
    held = eurusd[end : end + plan.stream_rows]
    chunks = []
    for i in range(0, len(held), plan.chunk):
        path = folder / "stream" / f"EURUSD_1h_part{i // plan.chunk + 1:02d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic("\n".join([header, *held[i : i + plan.chunk]]) + "\n", path)
        chunks.append(path)
    return DemoInputs(goog_path, eurusd_path, tuple(chunks))
