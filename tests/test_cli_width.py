"""CLI tables fit an 80-column terminal without cutting names or numbers."""

from __future__ import annotations

import io

from rich.console import Console

from tradeloop.cli.output import table
from tradeloop.cli.train import COLUMNS


def _render(t) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(t)
    return console.export_text()


def test_the_training_table_keeps_every_predictor_name_and_number_at_80_columns():
    rows = [
        ["shuffled_control", "0.507", "0.009", "0.033", "-12.39", "0.211", "0.241"],
        ["always_long", "0.517", "-0.009", "0.004", "2.26", "0.211", "0.003"],
    ]
    text = _render(table("walk-forward test, 15,995 rows, 9 folds", COLUMNS, rows))
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for row in rows:
        assert all(cell in text for cell in row)


def test_long_free_text_wraps_but_series_names_stay_whole():
    rows = [["BTCUSDT:1h", "12", "a reason long enough to need several lines at eighty columns " * 2]]
    text = _render(table("rejected bars", ("series", "line", "reason"), rows))
    assert "…" not in text
    assert "BTCUSDT:1h" in text
    assert max(len(line) for line in text.splitlines()) <= 80
