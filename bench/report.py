"""Regenerate the README's performance table from bench/results/*.json.

The table sits between ``<!-- bench:start -->`` and ``<!-- bench:end -->``; each benchmark that
has written its JSON contributes its rows, so the README never quotes a number by hand.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"


def _features(r: dict) -> list[tuple[str, str, str, str]]:
    b, n, s, m = r["batch"], r["naive_per_bar_pandas"], r["streaming"], r["memory"]
    return [
        (
            "features: batch bar-rows/s (1 core)",
            f"{b['rows_per_s']:,.0f}",
            f"{n['rows_per_s']:,.0f} (per-bar pandas)",
            "≥ 2,000,000",
        ),
        (
            "features: streaming update p50 / p99",
            f"{s['p50_us']:.1f} / {s['p99_us']:.1f} µs",
            f"{1e6 / n['rows_per_s']:,.0f} µs",
            "p99 ≤ 50 µs",
        ),
        ("features: batch peak memory", f"{m['peak_mib']:.1f} MiB for {m['rows']:,} bars", "", ""),
    ]


def _online(r: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for store in ("sqlite", "redis"):
        reads = r["reads"][store]
        for n, target in (("1", "p99 ≤ 2 ms"), ("100", "p99 ≤ 10 ms")):
            ours, feast = reads[f"reader_{n}"], reads[f"feast_get_online_features_{n}"]
            rows.append(
                (
                    f"online read, {store}, {n} series (p50 / p99)",
                    f"{ours['p50_ms']:.2f} / {ours['p99_ms']:.2f} ms",
                    f"{feast['p50_ms']:.2f} / {feast['p99_ms']:.2f} ms (Feast get_online_features)",
                    target if store == "redis" else "",
                )
            )
    for store, runs in r["ingest"].items():
        rows.append(
            (
                f"ingest, {store}, bars/s end to end",
                f"{runs['batched']['bars_per_s']:,.0f}",
                f"{runs['naive_one_at_a_time']['bars_per_s']:,.0f} (one bar per push)",
                "≥ 2,000",
            )
        )
    return rows


def _train(r: dict) -> list[tuple[str, str, str, str]]:
    w = r["workload"]
    rows = [
        (
            f"training, {len(w['series'])} series, {w['samples']:,} samples ({w['preset']})",
            f"{r['ray_total_s']:.0f} s with Ray",
            "",
            "≤ 600 s",
        )
    ]
    for phase, p in r["phases"].items():
        rows.append(
            (
                f"training: {phase} phase samples/s (Ray overhead)",
                f"{p['ray_samples_per_s']:,.0f} ({p['overhead']:.1f}×)",
                f"{p['plain_samples_per_s']:,.0f} (plain process)",
                "overhead ≤ 1.3×",
            )
        )
    return rows


def _drift(r: dict) -> list[tuple[str, str, str, str]]:
    w, c, b, n = r["workload"], r["check"], r["reference_build"], r["naive_scipy_loop"]
    return [
        (
            f"drift check, {w['features']} features, {w['current_rows']:,} vs {w['reference_rows']:,} rows",
            f"{c['seconds_median']:.2f} s ({c['cpu_seconds_median']:.2f} s CPU)",
            f"{n['seconds']:.1f} s (per-feature scipy ks_2samp + wasserstein_distance)",
            "≤ 1 s",
        ),
        (
            "drift reference build (once per bundle)",
            f"{b['seconds_median']:.2f} s, {b['json_kb']:.0f} KB JSON",
            "",
            "",
        ),
    ]


def _serve(r: dict) -> list[tuple[str, str, str, str]]:
    s, naive = r["servers"], r.get("naive") or {}

    def closed(server: str, cell: str) -> dict:
        return s[server]["cells"][cell]["closed"]

    def lat(c: dict) -> str:
        return f"{c['p50_ms']:.2f} / {c['p99_ms']:.2f} ms"

    def naive_lat(n: str) -> str:
        return f"{lat(naive[n])} (per-request pandas features + eager torch + XGBoost)" if n in naive else ""

    rows = []
    for proto, name in (("rest", "REST"), ("grpc", "gRPC")):
        floor = closed("kserve/noop", f"{proto}/1")
        rows.append(
            (
                f"serve KServe+Redis, 1 series, v2 {name} p50 / p99 (no-op floor p50)",
                f"{lat(closed('kserve/redis', f'{proto}/1'))} ({floor['p50_ms']:.2f} ms)",
                naive_lat("1") if proto == "rest" else "",
                "p50 ≤ floor + 0.4 ms, p99 ≤ 3 ms",
            )
        )
    rest, grpc = (s["kserve/redis"]["cells"][f"{p}/1"] for p in ("rest", "grpc"))
    floors = [s["kserve/noop"]["cells"][f"{p}/1"]["max"]["rps"] for p in ("rest", "grpc")]
    floor_text = f"(no-op floor {floors[0]:,.0f} / {floors[1]:,.0f})"
    rows.append(
        (
            f"serve KServe+Redis max req/s, 1 process, {rest['max']['concurrency']} clients (REST / gRPC)",
            f"{rest['max']['rps']:,.0f} / {grpc['max']['rps']:,.0f} {floor_text}",
            "",
            "≥ 800",
        )
    )
    if "kserve/redis-before" in s:
        before = [closed("kserve/redis-before", f"{p}/1") for p in ("rest", "grpc")]
        rows.append(
            (
                "serve KServe+Redis, 1 series p50 REST / gRPC: before the core's optimisation (same run)",
                f"{before[0]['p50_ms']:.2f} / {before[1]['p50_ms']:.2f} ms",
                "",
                "",
            )
        )
    big = [closed("kserve/redis", f"{p}/100") for p in ("rest", "grpc")]
    rows.append(
        (
            "serve KServe+Redis, 100 series, p50 / p99 (REST; gRPC)",
            f"{lat(big[0])}; {lat(big[1])}",
            naive_lat("100"),
            "p99 ≤ 15 ms",
        )
    )
    opened = [s["kserve/redis"]["cells"][f"{p}/1"]["open"] for p in ("rest", "grpc")]
    rows.append(
        (
            "serve KServe+Redis open loop, 1 series: achieved req/s, p50 / p99 (REST; gRPC)",
            "; ".join(f"{o['achieved_rps']:,.0f}/s {lat(o)}" for o in opened),
            "",
            "",
        )
    )
    if "kserve/redis+log" in s:
        logged = [closed("kserve/redis+log", f"{p}/1") for p in ("rest", "grpc")]
        rows.append(
            (
                "serve KServe+Redis, prediction log on (the default), 1 series p50 / p99 (REST; gRPC)",
                f"{lat(logged[0])}; {lat(logged[1])}",
                "",
                "",
            )
        )
    sq = [closed("kserve/sqlite", c) for c in ("rest/1", "grpc/1", "rest/100")]
    rows.append(
        (
            "serve KServe+SQLite p50 (1 series REST / gRPC; 100 series REST)",
            f"{sq[0]['p50_ms']:.2f} / {sq[1]['p50_ms']:.2f} ms; {sq[2]['p50_ms']:.2f} ms",
            "",
            "",
        )
    )
    if "rayserve/sqlite" in s:
        ray = r.get("rayserve_overhead", {})
        rows.append(
            (
                "serve Ray Serve+SQLite, 1 series p50 (REST / gRPC): proxy floor + core",
                " / ".join(
                    f"{o['p50_ms']:.1f} ms = {o['floor_p50_ms']:.1f} + {o['core_adds_p50_ms']:.1f}"
                    for o in (ray[p] for p in ("rest", "grpc") if p in ray)
                ),
                "",
                "",
            )
        )
        ray_max = [s["rayserve/sqlite"]["cells"][f"{p}/1"]["max"]["rps"] for p in ("rest", "grpc")]
        maxima = f"{ray_max[0]:,.0f} / {ray_max[1]:,.0f}"
        rows.append(("serve Ray Serve+SQLite max req/s (REST / gRPC)", maxima, "", ""))
    return rows


def _predict_core(r: dict) -> list[tuple[str, str, str, str]]:
    paths, naive = r["paths"], r.get("naive") or {}

    def us(n: str, path: str) -> str:
        v = paths[n][path]
        return f"{v['p50_us']:,.0f} / {v['p99_us']:,.0f} µs"

    rows = []
    for n in ("1", "100"):
        rows.append(
            (
                f"inference core in-process, {n} series, Redis: store read + predict + answer (p50 / p99)",
                us(n, "service"),
                f"{us(n, 'reference service')} (the core before per-bundle precomputation)",
                "",
            )
        )
        rows.append(
            (
                f"inference core: predict() on {n} rows (p50 / p99)",
                us(n, "predict"),
                f"{us(n, 'reference predict')} (before); bit-identical: {r['bit_identical'][n]}",
                "",
            )
        )
    calls = [paths[n]["kserve v2 grpc"]["p50_us"] for n in ("1", "100")]
    rows.append(
        (
            "KServe model call in-process, 1 / 100 series (v2 gRPC parse, predict, encode; p50)",
            f"{calls[0]:,.0f} / {calls[1]:,.0f} µs",
            " / ".join(f"{naive[n]['p50_ms'] * 1e3:,.0f}" for n in ("1", "100") if n in naive)
            + (" µs (per-request pandas + eager torch)" if naive else ""),
            "",
        )
    )
    return rows


RENDERERS: dict[str, Callable[[dict], list[tuple[str, str, str, str]]]] = {
    "features.json": _features,
    "online.json": _online,
    "train.json": _train,
    "drift.json": _drift,
    "serve.json": _serve,
    "predict_core.json": _predict_core,
}


def render() -> str:
    lines = ["| measure | tradeloop | naive baseline | target |", "|---|---|---|---|"]
    for name, renderer in RENDERERS.items():
        path = RESULTS / name
        if path.exists():
            lines += [f"| {' | '.join(row)} |" for row in renderer(json.loads(path.read_text()))]
    return "\n".join(lines)


def main() -> int:
    text = README.read_text()
    pattern = re.compile(r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", re.S)
    if not pattern.search(text):
        print("README has no bench markers", file=sys.stderr)
        return 1
    README.write_text(pattern.sub(lambda m: m.group(1) + render() + "\n" + m.group(2), text))
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
