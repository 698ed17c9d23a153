"""The prediction log: every answer appended to Parquet off the request path, for the monitor.

Requests hand records to a bounded queue (``submit`` never blocks: a full queue drops the
records and counts them, so a slow disk can never slow or fail a prediction); one writer thread
batches them into ``HOME/predictions/date=YYYY-MM-DD/part-*.parquet`` (atomic renames, so a
reader never sees half a file): every ``flush_s`` seconds it writes what is queued, in files
of at most ``batch_rows`` records, so a record reaches disk about ``flush_s`` after its request.
:meth:`PredictionLog.close` drains the queue: call it on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from services.predictor.core import Answer

__all__ = ["SCHEMA", "PredictionLog"]

log = logging.getLogger("tradeloop.predictor.log")

SCHEMA = pa.schema(
    [
        ("logged_at", pa.timestamp("us", tz="UTC")),
        ("as_of", pa.string()),
        ("series_id", pa.string()),
        ("model_version", pa.string()),
        ("inputs_digest", pa.string()),
        ("prob_up", pa.float32()),
        ("expected_return", pa.float32()),
        ("signal", pa.int8()),
        ("feature_age_s", pa.float32()),
    ]
)


class PredictionLog:
    """Asynchronous, bounded, date-partitioned Parquet writer (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        capacity: int = 100_000,
        batch_rows: int = 5_000,
        flush_s: float = 2.0,
        on_count: Callable[[str, int], None] = lambda outcome, n: None,
    ) -> None:
        self.root = root
        self._queue: queue.Queue[list[dict[str, Any]]] = queue.Queue(maxsize=capacity)
        self._batch_rows = batch_rows
        self._flush_s = flush_s
        self._on_count = on_count
        self.written = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, answer: Answer) -> bool:
        """Queue one answer's rows; False (and counted as dropped) when the queue is full."""
        now = datetime.now(UTC)
        records = [
            {
                "logged_at": now,
                "as_of": answer.as_of[i],
                "series_id": answer.series[i],
                "model_version": answer.model_version,
                "inputs_digest": answer.digests[i],
                "prob_up": float(answer.prob_up[i]),
                "expected_return": float(answer.expected_return[i]),
                "signal": int(answer.signal[i]),
                "feature_age_s": float(answer.feature_age_s[i]),
            }
            for i in range(len(answer.prob_up))
        ]
        if self._closed:
            self._drop(len(records))
            return False
        try:
            self._queue.put_nowait(records)
        except queue.Full:
            self._drop(len(records))
            return False
        return True

    def _drop(self, n: int) -> None:
        self.dropped += n
        self._on_count("dropped", n)

    def _run(self) -> None:
        # Wake every flush_s (or at close), take everything queued, write it. The writer never
        # waits on the queue itself: a thread woken by every request would take the GIL from the
        # server once per answer (the default server ran at ~60 % of --no-log's req/s that way).
        while True:
            closing = self._stop.wait(self._flush_s)
            self._write_queued()
            if closing:
                return

    def _write_queued(self) -> None:
        pending: list[dict[str, Any]] = []
        while True:
            try:
                pending.extend(self._queue.get_nowait())
            except queue.Empty:
                break
        for start in range(0, len(pending), self._batch_rows):
            self._write(pending[start : start + self._batch_rows])

    def _write(self, records: list[dict[str, Any]]) -> None:
        table = pa.Table.from_pylist(records, schema=SCHEMA)
        days = np.asarray([r["logged_at"].strftime("%Y-%m-%d") for r in records])
        try:
            for day in np.unique(days):
                part = table.filter(pa.array(days == day))
                folder = self.root / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"part-{uuid.uuid4().hex}.parquet"
                tmp = folder / f".{name}.tmp"
                pq.write_table(part, tmp)
                os.replace(tmp, folder / name)
            self.written += len(records)
            self._on_count("written", len(records))
        except OSError:
            log.exception("prediction log write failed; %d records dropped", len(records))
            self._drop(len(records))

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting records, write everything queued, and wait for the writer."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=timeout)
        if not self._thread.is_alive():
            self._write_queued()  # records a request queued while the writer was finishing
