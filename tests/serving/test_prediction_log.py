"""The prediction log's writer: batching, the flush deadline, dropping on a slow disk, close.

Answers are built by hand here, so every row read back from Parquet is compared with values
the test chose, not with what the log computed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from services.predictor.core import Answer
from services.predictor.predlog import PredictionLog
from tests.serving.helpers import wait_for


def _answer(i: int) -> Answer:
    return Answer(
        prob_up=np.asarray([i / 1000], dtype=np.float32),
        expected_return=np.asarray([-i / 1e5], dtype=np.float32),
        signal=np.asarray([(i % 3) - 1], dtype=np.int8),
        model_version="7",
        as_of=[f"2026-01-01T00:{i % 60:02d}:00+00:00"],
        feature_age_s=np.asarray([float(i)], dtype=np.float32),
        series=[f"S{i:03d}:1h"],
        digests=[f"{i:016x}"],
    )


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("part-*.parquet"))


def _rows(root: Path) -> list[dict[str, Any]]:
    rows = [row for f in _files(root) for row in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: r["series_id"])


def test_answers_one_at_a_time_are_written_together_not_a_file_each(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_s=60.0)
    for i in range(200):
        assert log.submit(_answer(i))
        if i % 20 == 0:
            time.sleep(0.01)  # the writer wakes up between requests, as on a server
    log.close()
    assert len(_files(tmp_path)) == 1
    rows = _rows(tmp_path)
    assert [r["series_id"] for r in rows] == [f"S{i:03d}:1h" for i in range(200)]
    assert rows[42]["prob_up"] == np.float32(0.042)
    assert rows[42]["signal"] == -1
    assert rows[42]["inputs_digest"] == "000000000000002a"
    assert rows[42]["model_version"] == "7"
    assert log.written == 200
    assert log.dropped == 0


def test_records_reach_disk_within_the_flush_interval_without_a_close(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_s=0.2)
    try:
        for i in range(3):
            log.submit(_answer(i))
        wait_for(lambda: len(_rows(tmp_path)) == 3, timeout=10, what="3 rows on disk")
    finally:
        log.close()
    assert len(_rows(tmp_path)) == 3


def test_files_hold_at_most_batch_rows_records(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, batch_rows=10, flush_s=60.0)
    for i in range(25):
        log.submit(_answer(i))
    log.close()
    sizes = sorted(pq.read_metadata(f).num_rows for f in _files(tmp_path))
    assert sizes == [5, 10, 10]
    assert len(_rows(tmp_path)) == 25


class _SlowDisk(PredictionLog):
    """A log whose first write waits until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.writing = threading.Event()
        self.release = threading.Event()
        super().__init__(*args, **kwargs)

    def _write(self, records: list[dict[str, Any]]) -> None:
        self.writing.set()
        assert self.release.wait(30)
        super()._write(records)


def test_a_slow_disk_drops_and_counts_records_instead_of_blocking_requests(tmp_path: Path) -> None:
    counted: dict[str, int] = {}
    log = _SlowDisk(
        tmp_path,
        capacity=2,
        flush_s=0.05,
        on_count=lambda outcome, n: counted.__setitem__(outcome, counted.get(outcome, 0) + n),
    )
    assert log.submit(_answer(0))
    assert log.writing.wait(10)  # the writer holds record 0 and waits on the disk
    accepted = [log.submit(_answer(i)) for i in range(1, 6)]  # a blocking put would hang here
    assert accepted == [True, True, False, False, False]  # two fit in the queue
    log.release.set()
    log.close()
    assert [r["series_id"] for r in _rows(tmp_path)] == ["S000:1h", "S001:1h", "S002:1h"]
    assert (log.written, log.dropped) == (3, 3)
    assert counted == {"written": 3, "dropped": 3}


def test_after_close_records_are_counted_as_dropped(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.submit(_answer(1))
    log.close()
    assert not log.submit(_answer(2))
    assert (log.written, log.dropped) == (1, 1)
