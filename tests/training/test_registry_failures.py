"""The registry under failure: an outage is never "no champion", and manual promotion is recorded.

A real ``mlflow server`` (SQLite backend, artifacts under tmp) runs as a subprocess; killing it
makes the store unavailable in the middle of a session, and restarting it on the same backend
shows what was (not) written. No Ray, no training: the bundles are dummy ONNX bytes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import require
from tradeloop.bundle import write_manifest
from tradeloop.cli.main import app
from tradeloop.config import Settings
from tradeloop.errors import InvalidInput, ModelNotReady
from tradeloop.registry import CHAMPION, HTTP_DEFAULTS, MODEL_NAME, Registry

MLFLOW = Path(sys.executable).with_name("mlflow")
START_S = 120.0


def _bundle(root: Path, tag: str) -> Path:
    (root / "cnn").mkdir(parents=True)
    (root / "cnn" / "x.onnx").write_bytes(f"not really onnx {tag}".encode())
    write_manifest(root, {"preset": {"name": "test"}, "tag": tag})
    return root


def _register(registry: Registry, tmp_path: Path, tag: str) -> str:
    bundle = _bundle(tmp_path / f"bundle-{tag}", tag)
    return registry.register(bundle, params={"preset": "test"}, metrics={"m": 1.0}).version


def _history(registry: Registry) -> list[str]:
    return json.loads(registry.client.get_registered_model(MODEL_NAME).tags["champion.history"])


class Server:
    """``mlflow server`` on a fixed loopback port and SQLite file, stoppable and restartable."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.root = root
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        require(MLFLOW.is_file(), f"no mlflow executable at {MLFLOW}")
        log = (self.root / "server.log").open("ab")
        cmd = [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        cmd += ["--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
        cmd += ["--artifacts-destination", str(self.root / "artifacts")]
        cmd += ["--default-artifact-root", "mlflow-artifacts:/"]
        # Its own process group, so stop() ends the server and its workers by that group's id.
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        require(False, f"mlflow server did not start on {self.uri}:\n{tail}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    # A dead server must fail in about a second, not after MLflow's minutes of backoff.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "server"
    root.mkdir()
    srv = Server(root)
    srv.start()
    yield srv
    srv.stop()


def test_an_empty_server_has_no_champion_and_no_history(server: Server, settings: Settings, tmp_path):
    registry = Registry(settings, server.uri)
    assert registry.alias(CHAMPION) is None  # no registered model at all
    assert registry._history() == []
    assert registry.versions() == []
    _register(registry, tmp_path, "a")  # the model exists now, with challenger but no champion
    assert registry.alias(CHAMPION) is None
    assert registry._history() == []
    assert registry.alias("challenger").version == "1"


def test_an_outage_mid_run_is_not_ready_and_loses_nothing(server: Server, settings: Settings, tmp_path):
    registry = Registry(settings, server.uri)
    v1 = _register(registry, tmp_path, "a")
    assert registry.promote(v1, reason="first")
    v2 = _register(registry, tmp_path, "b")
    assert registry.alias(CHAMPION).version == v1

    server.stop()
    started = time.monotonic()
    with pytest.raises(ModelNotReady) as caught:
        registry.alias(CHAMPION)
    assert server.uri in str(caught.value)
    assert caught.value.__cause__ is not None
    assert time.monotonic() - started < 10
    for call in (
        lambda: registry.promote(v2, reason="outage"),
        registry._history,
        registry.rollback,
        registry.versions,
        lambda: registry.get(v2),
        lambda: registry.download(v1, tmp_path / "dl"),
        lambda: _register(registry, tmp_path, "c"),
    ):
        with pytest.raises(ModelNotReady, match="unavailable"):
            call()

    home = ["--home", str(settings.home), "--json"]
    result = CliRunner().invoke(app, [*home, "models", "promote", v2, "--mlflow-uri", server.uri])
    assert result.exit_code == 3, result.output
    assert server.uri in result.output

    server.start()
    assert registry.alias(CHAMPION).version == v1
    assert _history(registry) == [v1]
    assert "promoted.reason" not in registry.get(v2).tags
    assert [v.version for v in registry.versions()] == [v2, v1]
    assert (registry.download(v1, tmp_path / "dl-after") / "cnn" / "x.onnx").is_file()


def test_a_broken_database_is_not_ready(settings: Settings, tmp_path):
    db = tmp_path / "broken.db"
    db.write_bytes(b"this is not a SQLite database " * 100)
    with pytest.raises(ModelNotReady, match=r"broken\.db") as caught:
        Registry(settings, f"sqlite:///{db}")
    assert type(caught.value.__cause__).__name__ == "DatabaseError"  # sqlalchemy's, as it escapes
    home = ["--home", str(settings.home), "--json"]
    result = CliRunner().invoke(app, [*home, "models", "list", "--mlflow-uri", f"sqlite:///{db}"])
    assert result.exit_code == 3, result.output


def test_a_database_broken_mid_run_is_not_ready(settings: Settings, tmp_path):
    db = tmp_path / "mlflow.db"
    registry = Registry(settings, f"sqlite:///{db}")
    v1 = _register(registry, tmp_path, "a")
    registry.promote(v1, reason="first")
    db.write_bytes(b"this is not a SQLite database " * 100)  # MLflow answers BAD_REQUEST here
    for call in (lambda: registry.alias(CHAMPION), registry._history, lambda: registry.get(v1)):
        with pytest.raises(ModelNotReady, match=r"mlflow\.db"):
            call()


@pytest.fixture
def sqlite_registry(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Registry(settings, f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_manual_promotion_is_recorded_and_said(sqlite_registry: Registry, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    registry = sqlite_registry
    v1 = _register(registry, tmp_path, "a")
    registry.promote(v1, reason="no champion yet")
    v2 = _register(registry, tmp_path, "b")
    registry.record(v2, {"gate.decision": "keep", "gate.reason": "directional_accuracy 0.51 < 0.52 + 0.005"})

    runner = CliRunner()
    uri = ["--mlflow-uri", registry.uri]
    result = runner.invoke(
        app, ["--home", str(settings.home), "models", "promote", v2, "--reason", "hotfix", *uri]
    )
    assert result.exit_code == 0, result.output
    assert "MANUAL promotion" in result.output
    assert "overriding the promotion gate" in result.output
    assert "keep" in result.output
    assert "directional_accuracy 0.51" in result.output

    assert registry.alias(CHAMPION).version == v2
    tags = registry.get(v2).tags
    assert tags["promoted.manual"] == "true"
    assert tags["promoted.by"] == "alice"
    assert tags["promoted.reason"] == "hotfix"
    assert tags["promoted.replaced"] == v1
    assert tags["promoted.at"].endswith("+00:00")
    assert registry.get(v1).tags["promoted.manual"] == "false"  # the gate's own promotion
    assert _history(registry) == [v1, v2]

    rolled = runner.invoke(app, ["--home", str(settings.home), "--json", "models", "rollback", *uri])
    assert json.loads(rolled.stdout) == {"from": v2, "champion": v1}


def test_manual_promotion_in_json_says_manual(sqlite_registry: Registry, settings, tmp_path):
    v1 = _register(sqlite_registry, tmp_path, "a")
    home = ["--home", str(settings.home), "--json"]
    result = CliRunner().invoke(app, [*home, "models", "promote", v1, "--mlflow-uri", sqlite_registry.uri])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["manual"] is True
    assert data["champion"] == v1
    assert data["previous"] is None
    assert "MANUAL" in data["note"]
    assert sqlite_registry.get(v1).tags["promoted.manual"] == "true"


def test_a_missing_version_is_invalid_input_not_an_outage(sqlite_registry: Registry, settings, tmp_path):
    home = ["--home", str(settings.home), "--json"]
    uri = ["--mlflow-uri", sqlite_registry.uri]
    runner = CliRunner()
    before = runner.invoke(app, [*home, "models", "promote", "7", *uri])  # no registered model yet
    assert before.exit_code == 2, before.output
    v1 = _register(sqlite_registry, tmp_path, "a")
    for bad, words in (("7", "no version '7'"), ("abc", "'abc' is neither a version number nor a set alias")):
        result = runner.invoke(app, [*home, "models", "promote", bad, *uri])
        assert result.exit_code == 2, result.output
        assert words in result.output
    with pytest.raises(InvalidInput) as caught:
        sqlite_registry.promote("7", reason="x")
    assert caught.value.field == "version"
    assert sqlite_registry.alias(CHAMPION) is None
    assert sqlite_registry.get(v1).version == v1


def test_http_defaults_are_short_and_never_override_the_users(settings, monkeypatch):
    for name in HTTP_DEFAULTS:  # set, then delete: monkeypatch restores the original either way
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    Registry(settings, "http://127.0.0.1:9")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert (
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]
        == HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]
    )
    assert int(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 30
