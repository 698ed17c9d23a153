"""The retrain loop end to end on one machine: a running predictor, ``tradeloop retrain``, and the
new champion taking over by hot reload while a client keeps calling — no request fails.

The champion starts as a shuffled-label bundle trained on the same two real series, so a real
retrain can beat it fold by fold on the same windows in direction and rank. The retrain gates on
those two (``--gate-metrics``): on this 2023 slice the shuffled model is close to always-long in a
rising market and has the better Sharpe, so the default gate rightly keeps it — which is not what
this test is about. Both are evaluated without costs so their contexts match.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from tests.serving.helpers import ServerProcess, free_ports, serve_command, wait_for
from tradeloop.cli.main import app
from tradeloop.registry import CHAMPION, Registry
from training.gate import register_and_gate

BODY = {
    "inputs": [
        {"name": "symbol", "datatype": "BYTES", "shape": [1], "data": ["BTCUSDT"]},
        {"name": "timeframe", "datatype": "BYTES", "shape": [1], "data": ["1h"]},
    ]
}


@pytest.fixture(scope="module")
def weak_champion(serving_home, tmp_path_factory):
    """A private registry whose champion is the shuffled-label model (promoted by hand)."""
    from training.job import TrainRequest, prepare, run
    from training.presets import get_preset

    root = tmp_path_factory.mktemp("retrain-reload")
    preset = get_preset("fast", costs_bps={"crypto": 0.0})
    prep = prepare(serving_home.settings, TrainRequest(preset=preset, shuffle_labels=True))
    result = run(serving_home.settings, prep, run_dir=root / "run", ray_dir=root / "ray")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry = Registry(serving_home.settings, uri)
    version, _ = register_and_gate(registry, result.bundle_dir, None, promote=False)
    registry.promote(version.version, reason="test: a weak champion", manual=True)
    return root, uri, version.version


def test_retrain_promotes_and_the_running_predictor_switches_without_a_failed_request(
    serving_home, weak_champion
):
    root, uri, weak = weak_champion
    http, grpc = free_ports(2)
    command = serve_command(
        serving_home.settings.home,
        engine="kserve",
        http_port=http,
        grpc_port=grpc,
        mlflow_uri=uri,
        options=["--max-feature-age", "0", "--poll-interval", "0.5", "--no-log"],
    )
    server = ServerProcess.start(command, url=f"http://127.0.0.1:{http}", log_path=root / "server.log")
    try:
        server.wait_http("/v2/health/ready")
        seen: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as c:
                while not stop.is_set():
                    r = c.post("/v2/models/tradeloop/infer", json=BODY)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                        continue
                    out = {o["name"]: o["data"] for o in r.json()["outputs"]}
                    seen.append(out["model_version"][0])
                    time.sleep(0.02)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        wait_for(lambda: weak in seen, timeout=30, what="the weak champion served")
        done = CliRunner().invoke(
            app,
            [
                "--home",
                str(serving_home.settings.home),
                "retrain",
                "--reason",
                "drift-detected",
                "--mlflow-uri",
                uri,
                "--cost",
                "crypto=0",
                "--gate-metrics",
                "directional_accuracy,rank_ic",
            ],
        )
        assert done.exit_code == 0, done.output  # promoted
        new = Registry(serving_home.settings, uri).alias(CHAMPION).version
        assert new != weak
        wait_for(lambda: seen and seen[-1] == new, timeout=60, what=f"v{new} served")
        time.sleep(0.5)
        stop.set()
        thread.join(timeout=15)
        assert failures == []
        switch = seen.index(new)
        assert set(seen[:switch]) == {weak}
        assert set(seen[switch:]) == {new}  # once switched, never back
    finally:
        server.stop()
