"""``tradeloop monitor check`` against a real champion: a shifted regime fires, degraded live
accuracy fires, and the dispatch dry run shows the request. (The false-trigger rate of adjacent
same-regime windows is measured in tests/monitor/test_drift.py.)

The champion is the fast preset trained on the real crypto slice (its bundle carries the drift
references). The shifted market is the same three real series with every bar's log moves scaled
×3 over its last 600 bars (a volatility regime the model never saw).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from services.monitor.check import DRIFT, PERFORMANCE, MonitorConfig, run_check
from services.predictor.predlog import SCHEMA
from tests.conftest import market_file
from tests.training.conftest import SLICE_BARS, SLICE_SYMBOLS
from tradeloop.bars.importer import import_file
from tradeloop.bars.store import BarStore
from tradeloop.cli.main import app
from tradeloop.cli.monitor import TRIGGERED
from tradeloop.config import Settings
from tradeloop.features.offline import build_series
from tradeloop.registry import Registry
from training.gate import register_and_gate

SHIFTED = 600


def _scaled(frame: pd.DataFrame, last: int, factor: float) -> pd.DataFrame:
    """Every price's log distance from the previous close ×factor over the last ``last`` bars."""
    out = frame.copy()
    prices = ["open", "high", "low", "close"]
    close = frame["close"].to_numpy(np.float64)
    new_prev = close[len(frame) - last - 1]
    for i in range(len(frame) - last, len(frame)):
        prev = close[i - 1]
        for col in prices:
            out.loc[out.index[i], col] = new_prev * np.exp(factor * np.log(frame[col].iloc[i] / prev))
        new_prev = out["close"].iloc[i]
    return out


def _home(root, factor: float) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings.load(root / "home")
    for symbol in SLICE_SYMBOLS:
        frame = pd.read_csv(market_file(f"{symbol}_1h.csv")).iloc[-SLICE_BARS:].reset_index(drop=True)
        if factor != 1.0:
            frame = _scaled(frame, SHIFTED, factor)
        frame.to_csv(root / f"{symbol}_1h.csv", index=False)
        import_file(root / f"{symbol}_1h.csv", settings)
        build_series(settings, symbol, "1h")
    return settings


def _champion(trained, tmp_path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = Registry(Settings.load(tmp_path / "reg"), uri)
    version, decision = register_and_gate(registry, trained.bundle_dir, None, promote=True)
    if not decision.promote:
        registry.promote(version.version, reason="test", manual=True)
    return uri


def test_a_shifted_regime_fires_drift_and_the_cooldown_holds_the_next(trained, tmp_path, monkeypatch):
    uri = _champion(trained, tmp_path)
    shifted = _home(tmp_path / "shifted", 3.0)
    config = MonitorConfig(consecutive=1, mlflow_uri=uri)
    result = run_check(shifted, config)
    assert result.fired == DRIFT
    assert all(entry["drifted"] for entry in result.series.values())
    assert max(e["max_psi"] for e in result.series.values()) > 1.0
    again = run_check(shifted, config)
    assert again.fired is None
    assert again.suppressed.startswith("drift-detected: cooldown")
    records = [
        json.loads(line) for line in (shifted.home / "monitor" / "decisions.jsonl").read_text().splitlines()
    ]
    assert [r["fired"] for r in records] == [DRIFT, None]
    assert records[0]["series"]["BTCUSDT:1h"]["top"][0]["psi"] > 0.2

    # The CLI: a dry-run dispatch prints the exact request and the exit code says it fired.
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/tradeloop")
    (shifted.home / "monitor" / "state.json").unlink()
    out = CliRunner().invoke(
        app,
        [
            "--home",
            str(shifted.home),
            "--json",
            "monitor",
            "check",
            "--dry-run",
            "--consecutive",
            "1",
            "--mlflow-uri",
            uri,
        ],
    )
    assert out.exit_code == TRIGGERED, out.output
    sent = json.loads(out.stdout)["dispatch"]
    assert sent["sent"] is False
    assert sent["request"]["url"].endswith("/repos/acme/tradeloop/dispatches")
    assert sent["request"]["body"]["event_type"] == DRIFT
    assert len(sent["request"]["body"]["client_payload"]) <= 10
    assert (shifted.home / "monitor" / "report.html").stat().st_size > 5000


def test_live_accuracy_below_the_walk_forward_bound_fires_performance(trained, tmp_path):
    uri = _champion(trained, tmp_path)
    calm = _home(tmp_path / "live", 1.0)
    version = Registry(calm, uri).alias("champion").version
    bars = BarStore(calm).read("BTCUSDT", "1h").iloc[-401:]
    realised = np.log(bars["close"].to_numpy()[1:] / bars["close"].to_numpy()[:-1])
    rows = pd.DataFrame(
        {
            "logged_at": pd.Timestamp(datetime.now(UTC)),
            "as_of": [t.isoformat() for t in pd.DatetimeIndex(bars["ts"].iloc[:-1])],
            "series_id": "BTCUSDT:1h",
            "model_version": version,
            "inputs_digest": "x",
            "prob_up": np.float32(0.5),
            "expected_return": (-realised).astype(np.float32),  # always the wrong sign
            "signal": np.int8(0),
            "feature_age_s": np.float32(1.0),
        }
    )
    # A client that asks 300 more times about the first bar adds no evidence: one bar, one answer.
    rows = pd.concat([rows, *[rows.iloc[[0]]] * 300], ignore_index=True)
    folder = calm.home / "predictions" / "date=2026-01-01"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False), folder / "part-0.parquet")
    result = run_check(calm, MonitorConfig(consecutive=1, mlflow_uri=uri))
    perf = result.performance
    assert perf["labelled"] == 400
    assert result.predictions["rows"] == 400
    assert perf["accuracy"] < 0.05  # flat bars excluded; every moved bar called wrong
    assert perf["degraded"]
    assert result.fired == PERFORMANCE
