"""In-process benchmark of the inference core: one prediction request's work, without a server.

Usage: ``.venv/bin/python bench/predict_core.py [--bundle DIR] [--work DIR] [--out FILE]``

Set-up (bench/serve.py's own helpers, loopback only): the last 3,000 real hourly bars of BTCUSDT
and ETHUSDT plus 100 replicated series, features built, Feast applied and materialized into a
throwaway redis-server; the ``fast`` preset trained once with Ray (or ``--bundle DIR`` registered)
and made champion in a SQLite MLflow. ``--work DIR`` keeps that home and reuses it next time
(Redis is re-materialized: it is started afresh each run). The KServe model is built exactly as
``tradeloop serve --engine kserve --max-feature-age 0 --no-log`` builds it, in this process.

Paths timed per request size (1 and 100 series), interleaved: every repetition runs each path
once, in a shuffled order, so load from other processes falls on all of them alike:

* ``store read``: ``OnlineReader.read`` (Redis, one pipeline);
* ``predict`` / ``reference predict``: ``tradeloop.inference.predict`` on those rows, beside the
  code it replaced (frozen below as ``_reference_*``; the answers are compared bit for bit);
* ``service`` / ``reference service``: ``PredictionService.infer`` (store read, inputs, predict,
  answer, metrics), beside the same steps as they were (per-row input stacking, the reference
  predict, input digests with the log off, one metric observation per row);
* ``kserve v2 rest`` / ``kserve v2 grpc``: all a KServe ``predict`` call does here: KServe's own
  parsing of the body into an ``InferRequest``, ``TradeloopModel._infer_v2`` (decode, service,
  encode) and ``InferResponse.to_rest`` / ``to_grpc`` (no HTTP, no event-loop hop);
* components: ONNX Runtime ``run``; XGBoost through :mod:`tradeloop.inference.booster` and
  through ``Booster.inplace_predict``.

The naive baseline is bench/serve.py's (per request: bar-store Parquet read, pandas features,
eager torch CNN, ``Booster.predict`` on a DMatrix), timed on its own. Prints a table and writes
``bench/results/predict_core.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: its shared helpers

import serve as serve_bench  # noqa: E402
from redis_server import start_redis  # noqa: E402

SIZES = (1, 100)


# ------------------------------------------------------------------------------------------------
# the reference: the core as it was before per-bundle precomputation (frozen copy, for timing and
# for bit-for-bit comparison of the answers)
# ------------------------------------------------------------------------------------------------
def _reference_groups(metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from tradeloop.bars.schema import ASSET_CLASSES, TIMEFRAMES
    from tradeloop.errors import InvalidInput

    by_minutes = {tf.minutes: name for name, tf in TIMEFRAMES.items()}
    metadata = np.asarray(metadata, dtype=np.float64)
    class_id = np.rint(metadata[:, 0]).astype(np.int64)
    minutes = np.rint(np.exp(metadata[:, 1])).astype(np.int64)
    bad = (class_id < 0) | (class_id >= len(ASSET_CLASSES)) | (np.abs(metadata[:, 0] - class_id) > 1e-3)
    if bad.any():
        raise InvalidInput("features", "unknown asset class")
    if [m for m in np.unique(minutes) if int(m) not in by_minutes]:
        raise InvalidInput("features", "unknown timeframe")
    classes = np.asarray(ASSET_CLASSES, dtype=object)[class_id]
    timeframes = np.asarray([by_minutes[int(m)] for m in minutes], dtype=object)
    return classes, timeframes


def _reference_predict(bundle: Any, windows: np.ndarray, features: np.ndarray) -> dict[str, np.ndarray]:
    from tradeloop.errors import InvalidInput
    from tradeloop.features import spec
    from tradeloop.inference import FEATURE_INPUTS, TF_GROUPS, onnx_scores, xgb_inputs

    windows, features = np.asarray(windows), np.asarray(features)
    if windows.ndim != 3 or features.ndim != 2 or len(features) == 0 or len(windows) != len(features):
        raise InvalidInput("window", "shape")
    if windows.shape[2] != len(spec.CHANNELS) or windows.shape[1] < bundle.window:
        raise InvalidInput("window", "shape")
    if features.shape[1] != len(FEATURE_INPUTS):
        raise InvalidInput("features", "shape")
    for name, values in (("window", windows), ("features", features)):
        if not np.issubdtype(values.dtype, np.floating):
            raise InvalidInput(name, "dtype")
    windows = np.ascontiguousarray(windows[:, -bundle.window :, :], dtype=np.float32)
    features = np.ascontiguousarray(features, dtype=np.float32)
    for name, values in (("window", windows), ("features", features)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise InvalidInput(name, f"row {int(np.argwhere(bad)[0][0])} holds NaN or inf")
    n_ind = len(spec.FEATURE_NAMES)
    indicators, metadata = features[:, :n_ind], features[:, n_ind:]
    classes, timeframes = _reference_groups(metadata)
    cnn_score = np.empty(len(features), dtype=np.float32)
    for group in np.unique(classes):
        mask = classes == group
        cnn_score[mask] = onnx_scores(bundle.cnn[group], windows[mask])
    x = xgb_inputs(indicators, cnn_score, metadata)
    tf_groups = np.asarray([TF_GROUPS[t] for t in timeframes], dtype=object)
    score = np.empty(len(features), dtype=np.float32)
    for group in np.unique(tf_groups):
        mask = tf_groups == group
        score[mask] = np.asarray(bundle.xgb[group].inplace_predict(x[mask]), dtype=np.float32)
    rvol = np.asarray(indicators[:, spec.FEATURE_NAMES.index("rvol_20")], dtype=np.float64)
    scale = np.maximum(np.nan_to_num(rvol, nan=0.0), 1e-6) * np.sqrt(bundle.horizon)
    expected = (score.astype(np.float64) * scale).astype(np.float32)
    knots_x = np.asarray(bundle.calibration.get("x", []), dtype=np.float64)
    knots_y = np.asarray(bundle.calibration.get("y", []), dtype=np.float64)
    if len(knots_x) == 0 or np.any(np.diff(knots_x) < 0) or np.any(np.diff(knots_y) < 0):
        raise ValueError("calibration")
    threshold = float(bundle.band.get("threshold", np.nan))
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError("band")
    s64 = np.asarray(score, dtype=np.float64)
    return {
        "score": score,
        "prob_up": np.interp(s64, knots_x, knots_y).astype(np.float32),
        "expected_return": expected,
        "signal": np.where(np.abs(s64) > threshold, np.sign(s64), 0).astype(np.int8),
        "cnn_score": cnn_score,
    }


def _reference_series_inputs(rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Any], np.ndarray]:
    """Per row: parse the id, list missing values, stack (max_age 0: no staleness check)."""
    from tradeloop.bars.schema import parse_series_id
    from tradeloop.features import spec
    from tradeloop.inference import FEATURE_INPUTS
    from tradeloop.inference.online import allowed_age_s

    now = datetime.now(UTC)
    windows, features, as_of, ages = [], [], [], []
    for row in rows:
        timeframe = parse_series_id(row.series_id)[1]
        missing = [n for n in FEATURE_INPUTS if row.values.get(n) is None]
        if row.window is None or row.event_ts is None or missing:
            raise RuntimeError(f"{row.series_id}: incomplete")
        stamp = min(row.event_ts, row.window_ts or row.event_ts)
        allowed_age_s(timeframe, 0.0)
        windows.append(np.asarray(row.window, dtype=np.float32).reshape(-1, len(spec.CHANNELS)))
        features.append([row.values[n] for n in FEATURE_INPUTS])
        as_of.append(stamp)
        ages.append((now - stamp).total_seconds())
    return np.stack(windows), np.asarray(features, dtype=np.float32), as_of, np.asarray(ages)


def _reference_service(service: Any, symbols: list[str], timeframes: list[str]) -> dict[str, Any]:
    """What PredictionService.infer did for named series, step by step as it was."""
    from tradeloop.inference.online import series_ids

    t0 = time.perf_counter()
    bundle = service.predictor.bundle
    ids = series_ids(symbols, timeframes)
    rows = service.predictor.reader().read(ids)
    windows, features, as_of, ages = _reference_series_inputs(rows)
    t1 = time.perf_counter()
    out = _reference_predict(bundle, windows, features)
    t2 = time.perf_counter()
    w = np.ascontiguousarray(windows, dtype=np.float32)
    f = np.ascontiguousarray(features, dtype=np.float32)
    digests = [hashlib.sha256(w[i].tobytes() + f[i].tobytes()).hexdigest()[:16] for i in range(len(f))]
    answer = {
        **out,
        "as_of": [t.isoformat() for t in as_of],
        "feature_age_s": ages.astype(np.float32),
        "digests": digests,
        "stages_s": {"features": t1 - t0, "model": t2 - t1, "total": t2 - t0},
    }
    metrics = service.metrics
    metrics.requests.labels(route="v2/infer", protocol="rest", code="200", model_version=bundle.version).inc()
    for stage, seconds in answer["stages_s"].items():
        metrics.stage_seconds.labels(stage=stage).observe(seconds)
    age = answer["feature_age_s"]
    for a in age[np.isfinite(age)]:
        metrics.feature_age_seconds.observe(float(a))
    for p in answer["prob_up"]:
        metrics.prob_up.observe(float(p))
    return answer


# ------------------------------------------------------------------------------------------------
# requests as KServe hands them to the model
# ------------------------------------------------------------------------------------------------
def _rest_request(n: int) -> Callable[[], Any]:
    """KServe's REST route: the JSON body validated into its pydantic model, then an InferRequest."""
    from kserve import InferRequest
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    body = serve_bench._rest_body(n)
    return lambda: InferRequest.from_inference_request(
        InferenceRequest.model_validate_json(body), serve_bench.MODEL
    )


def _grpc_request(n: int) -> Callable[[], Any]:
    """KServe's gRPC servicer: a ModelInferRequest (raw BYTES contents, as tritonclient sends)."""
    from kserve import InferRequest
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    message = pb.ModelInferRequest(model_name=serve_bench.MODEL, id="bench")
    for name, values in (("symbol", serve_bench._symbols(n)), ("timeframe", [serve_bench.TIMEFRAME] * n)):
        message.inputs.add(name=name, datatype="BYTES", shape=[n])
        message.raw_input_contents.append(b"".join(len(v).to_bytes(4, "little") + v.encode() for v in values))
    wire = message.SerializeToString()

    def parse() -> Any:
        request = pb.ModelInferRequest()
        request.ParseFromString(wire)
        return InferRequest.from_grpc(request)

    return parse


# ------------------------------------------------------------------------------------------------
# measurement
# ------------------------------------------------------------------------------------------------
def _interleaved(paths: dict[str, Callable[[], Any]], reps: int, seconds: float) -> dict[str, Any]:
    """Every repetition runs each path once in a shuffled order; per path p50/p99/mean in µs."""
    for fn in paths.values():  # warm-up
        for _ in range(20):
            fn()
    lat: dict[str, list[int]] = {name: [] for name in paths}
    order = list(paths)
    rng = random.Random(0)
    deadline = time.perf_counter() + seconds
    done = 0
    while done < reps and time.perf_counter() < deadline:
        rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter_ns()
            paths[name]()
            lat[name].append(time.perf_counter_ns() - t0)
        done += 1
    out = {}
    for name, values in lat.items():
        a = np.asarray(values, dtype=np.float64) / 1e3
        out[name] = {
            "n": len(a),
            "p50_us": float(np.percentile(a, 50)),
            "p99_us": float(np.percentile(a, 99)),
            "mean_us": float(a.mean()),
        }
    return out


def _same_answers(bundle: Any, windows: np.ndarray, features: np.ndarray) -> bool:
    from tradeloop.inference import predict

    ours, theirs = predict(bundle, windows, features), _reference_predict(bundle, windows, features)
    return all(
        getattr(ours, k).dtype == v.dtype and np.array_equal(getattr(ours, k), v) for k, v in theirs.items()
    )


def _setup(work: Path, market: Path, bundle: Path | None) -> tuple[Any, str, dict[str, Any]]:
    """(settings, mlflow uri, champion) of a home under ``work``, built unless already there."""
    from tradeloop.config import Settings

    settings = Settings.load(work / "home")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    marker = work / "champion.json"
    if marker.exists():
        return settings, uri, {**json.loads(marker.read_text()), "reused": True}
    work.mkdir(parents=True, exist_ok=True)
    setup = serve_bench._build_home(settings, market, work)
    champion = serve_bench._champion(settings, uri, work, bundle)
    champion = {**champion, "bundle_dir": str(champion["bundle_dir"]), **setup}
    marker.write_text(json.dumps(champion))
    return settings, uri, {**champion, "reused": False}


def _measure(model: Any, reps: int, seconds: float) -> tuple[dict[str, Any], dict[str, bool]]:
    from services.predictor.protocol import Request
    from tradeloop.inference import predict
    from tradeloop.inference.inputs import XGB_GROUPS
    from tradeloop.inference.online import series_ids, series_inputs

    service = model.service
    bundle = service.predictor.bundle
    reader = service.predictor.reader()
    fast, booster = bundle.xgb_by_group[XGB_GROUPS.index("hour")], bundle.xgb["hour"]
    results: dict[str, Any] = {}
    parity: dict[str, bool] = {}
    for n in SIZES:
        symbols, timeframes = serve_bench._symbols(n), [serve_bench.TIMEFRAME] * n
        ids = series_ids(symbols, timeframes)
        inputs = series_inputs(reader.read(ids), max_age=0)
        windows, features = inputs.windows, inputs.features
        parity[str(n)] = _same_answers(bundle, windows, features)
        request = Request(symbols=symbols, timeframes=timeframes)
        rest, grpc = _rest_request(n), _grpc_request(n)
        x = np.random.default_rng(0).normal(size=(n, booster.num_features())).astype(np.float32)
        window_w = np.ascontiguousarray(windows[:, -bundle.window :])
        paths = {
            "store read": lambda ids=ids: reader.read(ids),
            "predict": lambda w=windows, f=features: predict(bundle, w, f),
            "reference predict": lambda w=windows, f=features: _reference_predict(bundle, w, f),
            "service": lambda r=request: service.infer(r, route="v2/infer", protocol="rest"),
            "reference service": lambda s=symbols, t=timeframes: _reference_service(service, s, t),
            "kserve v2 rest": lambda make=rest: model._infer_v2(make()).to_rest(),
            "kserve v2 grpc": lambda make=grpc: model._infer_v2(make()).to_grpc(),
            "onnx run": lambda w=window_w: bundle.cnn["crypto"].run(None, {"window": w}),
            "xgb booster.py": lambda x=x: fast(x),
            "xgb inplace_predict": lambda x=x: booster.inplace_predict(x),
        }
        print(f"{n} series: timing {len(paths)} paths interleaved", flush=True)
        results[str(n)] = _interleaved(paths, reps if n == 1 else max(reps // 10, 50), seconds)
    return results, parity


def _print(result: dict[str, Any]) -> None:
    head = f"{'path':22} {'series':>6} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}  vs reference (p50)"
    print("\n" + head + "\n" + "-" * len(head))
    for n, paths in result["paths"].items():
        for name, v in paths.items():
            ref = paths.get(f"reference {name}")
            speed = f"{ref['p50_us'] / v['p50_us']:.2f}× faster" if ref else ""
            print(f"{name:22} {n:>6} {v['p50_us']:9.1f} {v['p99_us']:9.1f} {v['mean_us']:9.1f}  {speed}")
    naive = result.get("naive")
    if naive:
        for n in ("1", str(serve_bench.REPLICAS)):
            v = naive[n]
            print(f"{'naive (pandas+torch)':22} {n:>6} {v['p50_ms'] * 1e3:9.1f} {v['p99_ms'] * 1e3:9.1f}")
    print(f"answers bit-identical to the reference: {result['bit_identical']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--market", type=Path, default=ROOT.parent / "shared" / "data" / "market")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "predict_core.json")
    parser.add_argument("--bundle", type=Path, help="register this bundle dir instead of training")
    parser.add_argument("--work", type=Path, help="keep the home here and reuse it when it exists")
    parser.add_argument("--reps", type=int, default=3000, help="repetitions for 1 series (÷10 for 100)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per request size")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    opts = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server not found")
    sys.argv = sys.argv[:1]  # kserve parses the command line when imported (--work reads as --workers)

    from services.predictor.kserve_app import TradeloopModel
    from services.predictor.service import ServiceConfig

    began = time.perf_counter()
    load_start = list(os.getloadavg())
    work = opts.work or Path(tempfile.mkdtemp(prefix="tradeloop-bench-core-"))
    work.mkdir(parents=True, exist_ok=True)
    redis, redis_url = start_redis(work)
    model = None
    try:
        settings, uri, champion = _setup(work, opts.market, opts.bundle)
        os.environ["TRADELOOP_REDIS_URL"] = redis_url  # the served store: Redis
        online_s = serve_bench._online(settings, {"TRADELOOP_REDIS_URL": redis_url})
        config = ServiceConfig(
            settings.home, mlflow_uri=uri, max_feature_age=0, log_predictions=False, poll_s=3600
        )
        model = TradeloopModel(config)
        model.start()
        if not model.ready:
            sys.exit("the KServe model did not become ready")
        paths, parity = _measure(model, opts.reps, opts.seconds)
        naive = None
        if not opts.no_naive:
            naive = serve_bench._naive(settings, Path(champion["bundle_dir"]), 10.0)
    finally:
        if model is not None:
            model.stop()
        redis.terminate()
        redis.wait()
        if opts.work is None:
            shutil.rmtree(work, ignore_errors=True)

    result = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": list(os.getloadavg()),
        },
        "wall_s": time.perf_counter() - began,
        "setup": {
            "store": "redis",
            "champion_version": champion["version"],
            "reused_home": champion["reused"],
            "online_redis_s": online_s,
            "interleaved": "each repetition runs every path once, shuffled",
        },
        "paths": paths,
        "naive": naive,
        "bit_identical": parity,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"wrote {opts.out} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
