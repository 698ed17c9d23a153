"""Feature-engine benchmark: batch throughput, streaming latency, peak memory.

Runs on the real files in ../shared/data/market (override with TRADELOOP_MARKET_DATA), prints a
table and writes bench/results/features.json. Each measure stands beside a naive baseline from
the same run: the batch path against a per-bar pandas recompute of the same indicators over a
trailing window, the streaming update against that same per-bar recompute.

Targets on 2 cores: batch ≥ 2 million bar-rows/s per core; streaming p99 ≤ 50 µs per bar.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from tradeloop.bars.importer import import_file
from tradeloop.bars.store import BarStore
from tradeloop.config import Settings
from tradeloop.features import spec
from tradeloop.features.batch import feature_matrix
from tradeloop.features.streaming import StreamingFeatures

ROOT = Path(__file__).resolve().parents[1]
MARKET = Path(os.environ.get("TRADELOOP_MARKET_DATA", ROOT.parent / "shared" / "data" / "market"))
RESULTS = ROOT / "bench" / "results" / "features.json"
NAIVE_BARS = 400  # the naive recompute is O(n · lookback); a sample gives its per-bar rate


def load_series() -> list[pd.DataFrame]:
    """Every real file, imported and validated into canonical bars (one frame per series)."""
    settings = Settings.load(tempfile.mkdtemp(prefix="tradeloop-bench-"))
    for path in sorted(MARKET.glob("*.csv")):
        import_file(path, settings)
    store = BarStore(settings)
    return [store.read(s.symbol, s.timeframe) for s in store.series()]


def naive_row(window: pd.DataFrame) -> list[float]:
    """The indicators of the window's last bar, recomputed from scratch with pandas."""
    c, h, low, v = window["close"], window["high"], window["low"], window["volume"]
    prev = c.shift(1).fillna(window["open"])
    r1 = np.log(c / prev)
    row = [float(np.log(c.iloc[-1] / c.iloc[-1 - k])) for k in spec.RET_HORIZONS]
    row += [float(c.iloc[-1] / c.rolling(p).mean().iloc[-1] - 1) for p in spec.SMA_PERIODS]
    row += [float(c.iloc[-1] / c.ewm(span=p, adjust=False).mean().iloc[-1] - 1) for p in spec.EMA_PERIODS]
    mid, sd = c.rolling(20).mean().iloc[-1], c.rolling(20).std(ddof=0).iloc[-1]
    row += [float((c.iloc[-1] - mid + 2 * sd) / (4 * sd)), float(4 * sd / mid)]
    d = c - prev
    gain = d.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean().iloc[-1]
    loss = (-d).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean().iloc[-1]
    row.append(float(gain / (gain + loss)))
    macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    sig = macd.ewm(span=9, adjust=False).mean()
    row += [float(macd.iloc[-1] / c.iloc[-1]), float(sig.iloc[-1] / c.iloc[-1])]
    tr = pd.concat([h - low, (h - prev).abs(), (low - prev).abs()], axis=1).max(axis=1)
    row.append(float(tr.ewm(alpha=1 / 14, adjust=False).mean().iloc[-1] / c.iloc[-1]))
    row.append(float(r1.rolling(20).std(ddof=0).iloc[-1]))
    row.append(float((v.iloc[-1] - v.rolling(20).mean().iloc[-1]) / v.rolling(20).std(ddof=0).iloc[-1]))
    return row


def bench_batch(series: list[pd.DataFrame], repeats: int = 5) -> dict[str, float]:
    rows = sum(len(s) for s in series)
    for s in series:
        feature_matrix(s)  # warm caches and lazy imports
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in series:
            feature_matrix(s)
        timings.append(time.perf_counter() - t0)
    best, median = min(timings), float(np.median(timings))
    return {
        "rows": rows,
        "seconds_median": median,
        "rows_per_s": rows / median,
        "rows_per_s_best": rows / best,
    }


def bench_naive(bars: pd.DataFrame) -> dict[str, float]:
    lookback = spec.WARMUP
    start = len(bars) - NAIVE_BARS
    t0 = time.perf_counter()
    for t in range(start, len(bars)):
        naive_row(bars.iloc[t - lookback + 1 : t + 1])
    seconds = time.perf_counter() - t0
    return {"rows": NAIVE_BARS, "seconds": seconds, "rows_per_s": NAIVE_BARS / seconds}


def bench_streaming(series: list[pd.DataFrame]) -> dict[str, float]:
    samples: list[int] = []
    clock = time.perf_counter_ns
    for bars in series:
        stream = StreamingFeatures()
        values = bars[["open", "high", "low", "close", "volume"]].to_numpy().tolist()
        for o, h, low, c, v in values:
            t0 = clock()
            stream.update(o, h, low, c, v)
            samples.append(clock() - t0)
    us = np.asarray(samples) / 1e3
    return {
        "bars": len(us),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "p999_us": float(np.percentile(us, 99.9)),
        "mean_us": float(us.mean()),
    }


def bench_memory(series: list[pd.DataFrame]) -> dict[str, float]:
    largest = max(series, key=len)
    gc.collect()
    tracemalloc.start()
    feature_matrix(largest)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    output = len(largest) * (len(spec.FEATURE_NAMES) + len(spec.CHANNELS)) * 4
    return {
        "rows": len(largest),
        "peak_mib": peak / 2**20,
        "output_mib": output / 2**20,
        "peak_bytes_per_row": peak / len(largest),
    }


def main() -> int:
    if not MARKET.is_dir():
        print(f"market data not found at {MARKET}", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # measure one core honestly
    series = load_series()
    batch = bench_batch(series)
    naive = bench_naive(max(series, key=len))
    streaming = bench_streaming(series)
    memory = bench_memory(series)
    result = {
        "benchmark": "features",
        "when": pd.Timestamp.now(tz="UTC").isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "pinned_to_one_core": hasattr(os, "sched_setaffinity"),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "batch": batch,
        "naive_per_bar_pandas": naive,
        "batch_speedup_vs_naive": batch["rows_per_s"] / naive["rows_per_s"],
        "streaming": streaming,
        "streaming_speedup_vs_naive": (1e6 / naive["rows_per_s"]) / streaming["p50_us"],
        "memory": memory,
        "targets": {"batch_rows_per_s_per_core": 2_000_000, "streaming_p99_us": 50},
        "meets_targets": {
            "batch": batch["rows_per_s"] >= 2_000_000,
            "streaming": streaming["p99_us"] <= 50,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    table = Table(title=f"features benchmark ({batch['rows']:,} real bars, 1 core)")
    for col in ("measure", "tradeloop", "naive baseline", "target"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    table.add_row(
        "batch bar-rows/s", f"{batch['rows_per_s']:,.0f}", f"{naive['rows_per_s']:,.0f}", "≥ 2,000,000"
    )
    table.add_row(
        "streaming p50 µs/bar", f"{streaming['p50_us']:.1f}", f"{1e6 / naive['rows_per_s']:,.0f}", ""
    )
    table.add_row("streaming p99 µs/bar", f"{streaming['p99_us']:.1f}", "", "≤ 50")
    table.add_row("batch peak memory MiB", f"{memory['peak_mib']:.1f}", "", f"({memory['rows']:,} rows)")
    Console().print(table)
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
