"""The reduced demo (``DEMO_FAST``), run as a user runs it, interrupted once and resumed.

One run of ``tradeloop demo --fast`` is stopped with SIGINT (Ctrl-C) while its prediction server
is up; the test checks the server went down with it and the ports are free. A second run resumes
and finishes. Each stage's outcome is then checked against the real stores it wrote to (the MLflow
registry, the bar files the demo streamed, the monitor's decision log, the HTML report), and a
third run shows a finished demo is idempotent.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tradeloop.config import Settings
from tradeloop.registry import CHAMPION, Registry


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    home = tmp_path_factory.mktemp("demo") / "home"
    http, grpc = _free_port(), _free_port()
    command = [sys.executable, "-m", "tradeloop.cli.main", "--home", str(home), "demo", "--fast"]
    command += ["--http-port", str(http), "--grpc-port", str(grpc)]
    env = os.environ | {"GITHUB_REPOSITORY": "example/tradeloop", "TERM": "dumb", "COLUMNS": "100"}
    env.pop("DEMO_FAST", None)

    # First run: interrupt it with SIGINT once its server is up, as Ctrl-C in a terminal would.
    pid_file = home / "demo" / "server.pid"
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 1200  # generous: a shared 2-core machine trains slowly
    server_pid = None
    while time.monotonic() < deadline and first.poll() is None:
        if pid_file.is_file() and pid_file.read_text().strip():
            server_pid = int(pid_file.read_text())
            break
        time.sleep(0.2)
    assert server_pid is not None, f"the server never started:\n{first.communicate()[0][-4000:]}"
    time.sleep(1.0)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 130, output[-4000:]
    assert "interrupted" in output
    deadline = time.monotonic() + 30
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(server_pid), "Ctrl-C left the prediction server running"
    assert _port_free(http)
    assert _port_free(grpc)

    # Second run: resumes after the finished stages and completes.
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    return home, command, second.stdout


def test_resumed_demo_skips_the_stages_finished_before_the_interrupt(demo_home):
    _, _, output = demo_home
    assert "1/8 Import and validate real bars (done earlier: skipped)" in output
    assert "3/8 Train (Ray, fast preset), register, gate (done earlier: skipped)" in output


def test_demo_leaves_a_champion_in_the_registry(demo_home):
    home, _, _ = demo_home
    champion = Registry(Settings.load(home)).alias(CHAMPION)
    assert champion is not None
    assert (home / "demo" / "stages.json").is_file()


def test_rest_v1_v2_and_grpc_answers_agree(demo_home):
    home, _, _ = demo_home
    serving = json.loads((home / "demo" / "serving.json").read_text())
    answers = serving["answers"]
    assert set(answers) == {"v1_rest", "v2_rest", "v2_grpc"}
    first = answers["v1_rest"]
    for other in answers.values():
        assert other["prob_up"] == pytest.approx(first["prob_up"], abs=1e-6)
        assert other["model_version"] == first["model_version"]
        assert other["as_of"] == first["as_of"]
    for stats in serving["calls"].values():
        assert stats["n"] == len(stats["samples_ms"]) > 0
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]


def test_streamed_bars_move_as_of_to_the_newest_streamed_bar(demo_home):
    home, _, _ = demo_home
    rows = json.loads((home / "demo" / "stream.json").read_text())
    chunks = sorted((home / "demo" / "input" / "stream").glob("EURUSD_1h_part*.csv"))
    with chunks[-1].open() as fh:
        newest = list(csv.reader(fh))[-1][0]  # the source's unnamed date column
    assert rows[0]["as_of"] != rows[-1]["as_of"]
    assert pd.Timestamp(rows[-1]["as_of"]) == pd.Timestamp(newest, tz="UTC")
    as_of = [pd.Timestamp(r["as_of"]) for r in rows]
    assert as_of == sorted(as_of)


def test_monitor_made_a_drift_decision_on_the_streamed_period(demo_home):
    home, _, _ = demo_home
    lines = (home / "monitor" / "decisions.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert "fired" in last
    assert last["series"], "the check looked at no series"


def test_retrain_decision_is_recorded_and_the_server_reloaded_it(demo_home):
    home, _, _ = demo_home
    stages = json.loads((home / "demo" / "stages.json").read_text())["stages"]
    retrain = stages["retrain"]
    registry = Registry(Settings.load(home))
    version = registry.get(retrain["registered"])
    assert version.tags["gate.decision"] in {"promote", "keep"}
    assert retrain["decision"] == version.tags["gate.decision"]
    champion = registry.alias(CHAMPION)
    assert champion is not None
    assert champion.version == retrain["after"] == retrain["registered"]
    assert retrain["before"] != retrain["after"]
    assert retrain["failed_requests"] == 0


def test_report_exists_and_every_image_is_a_png(demo_home):
    home, _, _ = demo_home
    page = (home / "report" / "index.html").read_text()
    sources = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert sources, "the report has no images"
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_running_a_finished_demo_again_changes_nothing(demo_home):
    home, command, _ = demo_home
    registry = Registry(Settings.load(home))
    before = [v.version for v in registry.versions()]
    env = os.environ | {"TERM": "dumb", "COLUMNS": "100"}
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:]
    assert again.stdout.count("(done earlier: skipped)") == 7
    assert [v.version for v in registry.versions()] == before
