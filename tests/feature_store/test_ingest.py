"""Live ingest: streaming parity with batch, restart after SIGKILL, per-bar rejection of bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from tests.feature_store.conftest import HELD_BACK, SERIES, SYMBOL, TIMEFRAME, held_back_bars, make_home
from tests.feature_store.helpers import NAMES, batch_features, online_vs_batch
from tradeloop import feature_store as fs
from tradeloop.bars.store import BarStore, QuarantineStore
from tradeloop.config import Settings
from tradeloop.features.parity import TOLERANCE, relative_difference
from tradeloop.features.recent import offline_features
from tradeloop.ingest import Ingestor, state_path

ENV = {"TRADELOOP_REDIS_URL": "", "TRADELOOP_REGISTRY_URL": ""}  # embedded default stores


def _ready_home(root: Path) -> Settings:
    settings = make_home(root)
    fs.apply(settings, ENV)
    fs.materialize(fs.open_store(settings, ENV), start=datetime(2000, 1, 1, tzinfo=UTC))
    return settings


def _jsonl(bars: pd.DataFrame) -> list[str]:
    return [json.dumps(r) for r in bars.to_dict(orient="records")]


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return batch_features()


@pytest.fixture(scope="module")
def live_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _ready_home(tmp_path_factory.mktemp("live"))


def test_bars_ingested_one_by_one_match_batch_features_online(
    live_home: Settings, batch: pd.DataFrame
) -> None:
    ingestor = Ingestor(live_home, environ=ENV)
    reader = fs.OnlineReader(fs.open_store(live_home, ENV))
    worst = 0.0
    for line, ts in zip(_jsonl(held_back_bars()), held_back_bars()["ts"], strict=True):
        ingestor.run([line], batch_size=1)
        row = reader.read([SERIES])[0]
        assert row.event_ts == row.window_ts == pd.Timestamp(ts).to_pydatetime()
        worst = max(worst, online_vs_batch(row, batch))
    assert worst <= TOLERANCE
    assert not ingestor.report.rejected
    # Offline rows written by ingest equal batch rows too, one per bar.
    offline = offline_features(live_home, SYMBOL, TIMEFRAME).set_index("ts")
    tail = batch.set_index("ts").iloc[-HELD_BACK:]
    assert (
        relative_difference(offline.loc[tail.index, NAMES].to_numpy(), tail[NAMES].to_numpy()).max()
        <= TOLERANCE
    )


def test_bad_bars_are_rejected_one_by_one_while_valid_bars_land(live_home: Settings) -> None:
    stored = BarStore(live_home).read(SYMBOL, TIMEFRAME)
    last = stored.iloc[-1]
    gaps = stored["ts"].diff() > pd.Timedelta(hours=1)
    in_gap = stored.loc[gaps.idxmax() - 1, "ts"] + pd.Timedelta(hours=1)  # a missing hour, long ago
    step = pd.Timedelta(hours=1)

    def bar(ts: pd.Timestamp, close: float, **extra: object) -> dict[str, object]:
        base = {"ts": ts.isoformat(), "symbol": SYMBOL, "timeframe": TIMEFRAME}
        prices = {
            "open": last.close,
            "high": max(last.close, close) * 1.001,
            "low": min(last.close, close) * 0.999,
        }
        return base | prices | {"close": close, "volume": 100.0} | extra

    good1, good2 = bar(last.ts + step, last.close * 1.002), bar(last.ts + 2 * step, last.close * 1.001)
    missing = {k: v for k, v in bar(last.ts + 3 * step, last.close).items() if k != "volume"}
    lines = [
        json.dumps(good1),
        '{"ts": "2024-01-01T00:00:00Z", "symbol": "EURUSD", ',  # malformed JSON
        json.dumps(missing),  # no volume
        json.dumps(bar(in_gap, last.close)),  # older than the last bar
        json.dumps(bar(last.ts, last.close * 0.9)),  # restates the last stored bar differently
        json.dumps(
            {k: v for k, v in last.items() if k != "ts"} | {"ts": last.ts.isoformat()}
        ),  # exact repeat
        json.dumps(bar(last.ts + 3 * step, math.nan)),  # NaN close
        json.dumps(good2),
    ]
    report = Ingestor(live_home, source="test", environ=ENV).run(lines, batch_size=100)
    reasons = {r.line: r.reason for r in report.rejected}
    assert reasons == {
        2: "malformed",
        3: "missing_field",
        4: "unsorted",
        5: "conflicting_duplicate",
        6: "duplicate_ts",
        7: "nan",
    }
    assert all(r.detail for r in report.rejected)
    assert report.accepted[SERIES] == 2
    row = fs.read_online(fs.open_store(live_home, ENV), [SERIES])[0]
    assert row.event_ts == pd.Timestamp(good2["ts"]).to_pydatetime()
    assert set(QuarantineStore(live_home).read()["reason"]) >= set(reasons.values())


def _run_ingest(home: Settings, path: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tradeloop.cli.main", "--home", str(home.home), "--json"]
    env = {**os.environ, **ENV}
    return subprocess.Popen(
        [*cmd, "ingest", str(path), "--batch-size", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _ingested(home: Settings) -> int:
    path = state_path(home, SERIES)
    try:
        return int(json.loads(path.read_text())["stream"]["count"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_ingest_killed_halfway_continues_exactly_on_restart(
    tmp_path_factory: pytest.TempPathFactory, batch: pd.DataFrame
) -> None:
    home = _ready_home(tmp_path_factory.mktemp("killed"))
    feed = tmp_path_factory.mktemp("feed") / "bars.jsonl"
    feed.write_text("\n".join(_jsonl(held_back_bars())) + "\n")
    stored = len(BarStore(home).read(SYMBOL, TIMEFRAME))

    proc = _run_ingest(home, feed)
    deadline = time.monotonic() + 120
    while _ingested(home) < stored + HELD_BACK // 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _ingested(home) - stored
    assert 0 < done_before < HELD_BACK

    proc = _run_ingest(home, feed)  # the same file again: ingested bars are exact repeats
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    assert report["accepted"] + report["reasons"].get("duplicate_ts", 0) == HELD_BACK
    assert set(report["reasons"]) <= {"duplicate_ts"}

    bars = BarStore(home).read(SYMBOL, TIMEFRAME)
    assert len(bars) == stored + HELD_BACK
    assert bars["ts"].is_unique
    row = fs.read_online(fs.open_store(home, ENV), [SERIES])[0]
    assert row.event_ts == batch["ts"].iloc[-1].to_pydatetime()
    assert online_vs_batch(row, batch) <= TOLERANCE
    offline = offline_features(home, SYMBOL, TIMEFRAME).set_index("ts")
    tail = batch.set_index("ts").iloc[-HELD_BACK:]
    assert (
        relative_difference(offline.loc[tail.index, NAMES].to_numpy(), tail[NAMES].to_numpy()).max()
        <= TOLERANCE
    )
