"""Training benchmark: the reference workload with Ray Train, and the same loops in one plain process.

Workload: 12 real series built from ../shared/data/market — BTC/ETH/SOL/BNB hourly bars and their
4h and 1d resamples (see :func:`workload` for why the 1-minute file is left out).
Phases: CNN (fit + ONNX export + scoring the XGBoost rows) and XGBoost (walk-forward fold boosters,
their shuffled controls, and the final booster). The plain run calls the very same ``fit``
functions with one worker and all cores, so the ratio is Ray's overhead. Prints a table and
writes ``bench/results/train.json``.

    .venv/bin/python bench/train.py [--preset balanced] [--workers 2] [--gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tradeloop.bars.importer import import_file  # noqa: E402
from tradeloop.bars.resample import resample_bars  # noqa: E402
from tradeloop.bars.schema import Timeframe  # noqa: E402
from tradeloop.bars.store import BarStore  # noqa: E402
from tradeloop.config import Settings  # noqa: E402
from training import cnn, xgb  # noqa: E402
from training.job import TrainRequest, cnn_data, prepare, run, xgb_data  # noqa: E402
from training.presets import get_preset  # noqa: E402

MARKET = Path(os.environ.get("TRADELOOP_MARKET_DATA", ROOT.parent / "shared" / "data" / "market"))
RESULTS = ROOT / "bench" / "results" / "train.json"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


def workload(settings: Settings) -> dict[tuple[str, str], object]:
    """The 12 reference series as canonical bars in memory (imported, validated, resampled).

    BTC/ETH/SOL/BNB hourly bars and their 4h and 1d resamples: 4 symbols × 3 timeframes. Splits
    cut one time for all series, so the series must overlap in time; BTC's 1-minute file covers
    three weeks of 2023 only and would land whole in one fold, so it is not part of the workload.
    """
    bars: dict[tuple[str, str], object] = {}
    store = BarStore(settings)
    for symbol in SYMBOLS:
        import_file(MARKET / f"{symbol}_1h.csv", settings, symbol=symbol)
        hourly = store.read(symbol, "1h")
        bars[(symbol, "1h")] = hourly
        for tf in ("4h", "1d"):
            bars[(symbol, tf)] = resample_bars(hourly, Timeframe.parse("1h"), Timeframe.parse(tf), "crypto")
    return bars


def plain(prep, threads: int) -> dict[str, float]:
    """The CNN and XGBoost loops of :func:`training.job.run`, in this process, without Ray."""
    data, layout, preset = prep.data, prep.plan, prep.request.preset
    scores = np.full(len(data), np.nan, dtype=np.float32)
    t0 = time.perf_counter()
    cnn_samples = 0
    with tempfile.TemporaryDirectory() as tmp:
        for group in sorted(set(data.group_of("cnn"))):
            payload, fit_idx = cnn_data(prep, group)
            config = {"width": preset.cnn_width, "lr": preset.cnn_lr, "epochs": preset.cnn_epochs}
            config |= {"patience": preset.cnn_patience, "batch": preset.cnn_batch, "seed": preset.seed}
            done: list[int] = []
            best = cnn.fit(payload, config | {"threads": threads}, report=_count(done))
            cnn_samples += len(fit_idx) * len(done)
            model = cnn.model_from_state(best, preset.cnn_width)
            val = np.flatnonzero(layout.cnn_val & (data.group_of("cnn") == group))[:2048]
            path = Path(tmp) / f"{group}.onnx"
            cnn.export_onnx(model, path, data.windows(val))
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            todo = np.flatnonzero(layout.xgb & (data.group_of("cnn") == group))
            for start in range(0, len(todo), 16384):
                chunk = todo[start : start + 16384]
                scores[chunk] = cnn.onnx_scores(session, data.windows(chunk))
        cnn_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        xgb_samples = 0
        for group in sorted(set(data.group_of("xgb"))):
            payload, _ = xgb_data(prep, group, scores)
            config = {"depth": preset.xgb_depth, "eta": preset.xgb_eta, "rounds": preset.xgb_rounds}
            booster, _ = xgb.fit(payload, config | {"seed": preset.seed, "threads": threads})
            booster.save_model(str(Path(tmp) / f"{group}.ubj"))
            xgb_samples += xgb_rows(payload)
        xgb_s = time.perf_counter() - t0
    return {"cnn_s": cnn_s, "xgb_s": xgb_s, "cnn_samples": cnn_samples, "xgb_samples": xgb_samples}


def _count(epochs: list[int]):
    def report(metrics: dict, _checkpoint: object) -> None:
        epochs.append(metrics["epoch"])

    return report


def xgb_rows(payload: xgb.XGBData) -> int:
    """Training rows over every booster of a group: folds, their controls, and the final one."""
    return 2 * sum(len(t) for t in payload.fold_train) + len(payload.final)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--skip-plain", action="store_true")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(Path(tmp) / "home")
        bars = workload(settings)
        request = TrainRequest(preset=get_preset(args.preset), workers=args.workers, gpu=args.gpu, bars=bars)
        prep = prepare(settings, request)
        n = len(prep.data)
        print(f"{len(bars)} series, {n:,} samples, preset {args.preset}", file=sys.stderr)
        t0 = time.perf_counter()
        result = run(settings, prep, run_dir=Path(tmp) / "run", ray_dir=Path(tmp) / "ray")
        ray_total = time.perf_counter() - t0
        epochs = {g: len(h) for g, h in result.report["learning_curves"]["cnn"].items()}
        fit_rows = {g: len(r) for g, r in result.cnn_rows.items()}
        ray_cnn_samples = sum(fit_rows[g] * epochs[g] for g in epochs)
        scores = result.cnn_scores
        ray_xgb_samples = sum(
            xgb_rows(xgb_data(prep, g, scores)[0]) for g in sorted(set(prep.data.group_of("xgb")))
        )
        base = None if args.skip_plain else plain(prep, threads)
    ray_t = result.timings
    phases = {
        "cnn": {"ray_s": ray_t["cnn_s"], "ray_samples": ray_cnn_samples},
        "xgb": {"ray_s": ray_t["xgb_s"], "ray_samples": ray_xgb_samples},
    }
    if base is not None:
        for phase in ("cnn", "xgb"):
            phases[phase] |= {"plain_s": base[f"{phase}_s"], "plain_samples": base[f"{phase}_samples"]}
    rows = []
    for phase, v in phases.items():
        v["ray_samples_per_s"] = v["ray_samples"] / v["ray_s"]
        if "plain_s" in v:
            v["plain_samples_per_s"] = v["plain_samples"] / v["plain_s"]
            v["overhead"] = v["ray_s"] / v["plain_s"]
        rows.append(phase)
    model = result.report["models"]["model"]["overall"]
    out = {
        "workload": {"series": sorted(f"{s}:{t}" for s, t in bars), "samples": n, "preset": args.preset},
        "workers": args.workers,
        "gpu": args.gpu,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "phases": phases,
        "ray_total_s": ray_total,
        "overhead_total": (ray_t["cnn_s"] + ray_t["xgb_s"]) / (base["cnn_s"] + base["xgb_s"])
        if base
        else None,
        "model_directional_accuracy": model["directional_accuracy"],
        "targets": {"total_s": 600, "overhead": 1.3},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    print(f"{'phase':6} {'ray s':>8} {'ray samp/s':>11} {'plain s':>8} {'plain samp/s':>12} {'overhead':>8}")
    for phase in rows:
        v = phases[phase]
        nan = float("nan")
        print(
            f"{phase:6} {v['ray_s']:8.1f} {v['ray_samples_per_s']:11.0f} {v.get('plain_s', nan):8.1f} "
            f"{v.get('plain_samples_per_s', nan):12.0f} {v.get('overhead', nan):8.2f}"
        )
    print(f"total with Ray (incl. evaluation, bundle, report): {ray_total:.1f} s; wrote {RESULTS}")


if __name__ == "__main__":
    main()
