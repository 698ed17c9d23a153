"""Online feature store benchmark: read latency (SQLite, Redis) and live ingest throughput.

Usage: ``python bench/online.py [--market DIR] [--out bench/results/online.json]``

Reads: p50/p99 of one in-process read of 1 and of 100 series (both views, W×C window included)
through :class:`tradeloop.feature_store.OnlineReader`, beside Feast's generic
``get_online_features(...).to_dict()`` as the baseline. Ingest: bars/s end to end (parse,
validate, streaming update, online push, offline Parquet, bar store, checkpoint) for real
ETHUSDT 1h bars in batches of 500, beside pushing one bar at a time. A throwaway redis-server
runs on a free loopback port; everything is written under a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: its shared helpers

from redis_server import start_redis  # noqa: E402

from tradeloop import feature_store as fs  # noqa: E402
from tradeloop.bars.importer import import_file  # noqa: E402
from tradeloop.config import Settings  # noqa: E402
from tradeloop.features import spec  # noqa: E402
from tradeloop.features.offline import build_series  # noqa: E402
from tradeloop.features.recent import offline_features, sync_windows, window_frame  # noqa: E402
from tradeloop.ingest import Ingestor  # noqa: E402

TARGETS = {"redis_p99_ms_1": 2.0, "redis_p99_ms_100": 10.0, "ingest_bars_per_s": 2000.0}
LIVE_BARS = 2000  # real bars held back from the store and ingested live
NAIVE_BARS = 150  # bars pushed one at a time for the baseline


def _home(root: Path, market: Path, env: dict[str, str]) -> tuple[Settings, pd.DataFrame]:
    """A home holding ETHUSDT 1h minus its last LIVE_BARS bars (returned as ingest input)."""
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings.load(root / "home")
    frame = pd.read_csv(market / "ETHUSDT_1h.csv")
    cut = root / "ETHUSDT_1h.csv"
    frame.iloc[:-LIVE_BARS].to_csv(cut, index=False)
    import_file(cut, settings, symbol="ETHUSDT", timeframe="1h")
    build_series(settings, "ETHUSDT", "1h")
    sync_windows(settings)
    fs.apply(settings, env)
    fs.materialize(fs.open_store(settings, env), start=datetime(2000, 1, 1, tzinfo=UTC))
    tail = frame.iloc[-LIVE_BARS:]
    live = pd.DataFrame({"ts": tail["date"], "symbol": "ETHUSDT", "timeframe": "1h"})
    for k in ("open", "high", "low", "close", "volume"):
        live[k] = tail[k].to_numpy()
    return settings, live


def _percentiles(fn: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(min(20, n)):
        fn()
    lat = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        lat[i] = time.perf_counter() - t0
    return {"p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3)}


def _reads(settings: Settings, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Write 100 series (real feature rows under distinct ids), then time both read paths."""
    store = fs.open_store(settings, env)
    table = offline_features(settings, "ETHUSDT", "1h").iloc[-300:].reset_index(drop=True)
    ids = [f"BENCH{i:03d}:1h" for i in range(100)]
    rows = table.iloc[-100:].reset_index(drop=True).assign(series_id=ids)
    windows = window_frame(
        "x", table["ts"], table[list(spec.CHANNELS)].to_numpy(), table["created"].max(), 100
    )
    fs.OnlineWriter(store).write(
        rows[["series_id", "ts", "created", *spec.FEATURE_NAMES, *spec.METADATA]],
        windows.assign(series_id=ids),
    )
    reader = fs.OnlineReader(store)
    refs = list(fs.FEATURE_REFS)

    def feast_read(sel: list[str]) -> object:
        return store.get_online_features(features=refs, entity_rows=[{"series_id": s} for s in sel]).to_dict()

    return {
        "reader_1": _percentiles(lambda: reader.read(ids[:1]), 2000),
        "reader_100": _percentiles(lambda: reader.read(ids), 200),
        "feast_get_online_features_1": _percentiles(lambda: feast_read(ids[:1]), 1000),
        "feast_get_online_features_100": _percentiles(lambda: feast_read(ids), 100),
    }


def _ingest(root: Path, market: Path, env: dict[str, str], batch: int, bars: int) -> dict[str, float]:
    settings, live = _home(root, market, env)
    lines = [json.dumps(r) for r in live.iloc[:bars].to_dict(orient="records")]
    ingestor = Ingestor(settings, environ=env)
    ingestor.state("ETHUSDT:1h")  # bootstrap (replay of the stored history) is not per-bar cost
    t0 = time.perf_counter()
    report = ingestor.run(lines, batch_size=batch)
    elapsed = time.perf_counter() - t0
    if report.rejected or report.accepted["ETHUSDT:1h"] != bars:
        raise RuntimeError(f"ingest did not land every bar: {report.to_dict()}")
    return {"bars": bars, "batch_size": batch, "seconds": elapsed, "bars_per_s": bars / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--market", type=Path, default=ROOT.parent / "shared" / "data" / "market")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "online.json")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server not found")
    tmp = Path(tempfile.mkdtemp(prefix="tradeloop-bench-"))
    redis, url = start_redis(tmp)
    try:
        stores = {"sqlite": {}, "redis": {"TRADELOOP_REDIS_URL": url}}
        reads, ingest = {}, {}
        for name, env in stores.items():
            settings, _ = _home(tmp / f"reads-{name}", args.market, env)
            reads[name] = _reads(settings, env)
            ingest[name] = {
                "batched": _ingest(tmp / f"ingest-{name}", args.market, env, 500, LIVE_BARS),
                "naive_one_at_a_time": _ingest(tmp / f"naive-{name}", args.market, env, 1, NAIVE_BARS),
            }
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    checks = {
        "redis_p99_ms_1": reads["redis"]["reader_1"]["p99_ms"],
        "redis_p99_ms_100": reads["redis"]["reader_100"]["p99_ms"],
        "ingest_bars_per_s": min(v["batched"]["bars_per_s"] for v in ingest.values()),
    }
    met = {k: (v >= TARGETS[k] if k.endswith("per_s") else v <= TARGETS[k]) for k, v in checks.items()}
    result = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "reads": reads,
        "ingest": ingest,
        "targets": TARGETS,
        "measured": checks,
        "met": met,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'store':8} {'read path':32} {'series':>6} {'p50 ms':>9} {'p99 ms':>9}")
    for store, paths in reads.items():
        for key, v in paths.items():
            path, n = key.rsplit("_", 1)
            print(f"{store:8} {path:32} {n:>6} {v['p50_ms']:9.3f} {v['p99_ms']:9.3f}")
    print(f"\n{'store':8} {'ingest':22} {'bars':>6} {'bars/s':>10}")
    for store, runs in ingest.items():
        for key, v in runs.items():
            print(f"{store:8} {key:22} {v['bars']:>6} {v['bars_per_s']:10.0f}")
    print("\ntargets: " + ", ".join(f"{k} {checks[k]:.3g} ({'met' if met[k] else 'MISSED'})" for k in checks))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
