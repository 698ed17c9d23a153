"""HTML building blocks of the report: escaped tables, embedded PNG figures, sections.

Every image is embedded as a ``data:`` URI, so ``index.html`` is one file that can be mailed or
attached to a CI run and still shows its plots.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["CSS", "empty", "figure", "img", "png_figure", "section", "table"]

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{padding:3px 9px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}
.bad{color:#b00020;font-weight:bold}.good{color:#1b5e20}.note{color:#666}
img{max-width:100%;margin:.5em 0}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (for cells already built as HTML)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw else esc(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def png_figure(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def figure(fig: Any, alt: str) -> str:
    """A matplotlib figure as an embedded image (the figure is closed)."""
    return img(png_figure(fig), alt)


def empty(what: str) -> str:
    return f'<p class="note">{esc(what)}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<h2 id="{esc(anchor)}">{esc(title)}</h2>\n{body}'
