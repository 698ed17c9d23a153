"""The GitHub dispatch adapter against a local stand-in for GitHub's ``/dispatches`` endpoint.

The stand-in is a real HTTP server on loopback that checks requests the way GitHub does (path,
bearer token, headers, JSON body, at most 10 ``client_payload`` keys) and then answers from a
script, so retries, rate limits and refusals are exercised through a real httpx client.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from services.monitor.github import DispatchFailed, DispatchRefused, dispatch
from tradeloop.errors import InvalidInput

pytestmark = pytest.mark.timeout(60)

REPO = "acme/tradeloop"
TOKEN = "ghp_tRaDeLoOpS3cr3tT0k3nNeverPrintMe0123"
PAYLOAD = {"series": "BTCUSDT:1h", "psi": 0.31, "breaches": 3, "features": ["rsi_14", "atr_close"]}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


class FakeGitHub:
    """Validates like GitHub's ``POST /repos/{owner}/{repo}/dispatches``, then answers from ``script``
    (204 once the script is used up). Every request is recorded in ``requests``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[Seen] = []
        self.script: list[Answer] = []

    def answer(self, seen: Seen) -> Answer:
        self.requests.append(seen)
        if seen.method != "POST" or seen.path != f"/repos/{REPO}/dispatches":
            return Answer(404, body={"message": "Not Found"})
        if seen.headers.get("authorization") != f"Bearer {TOKEN}":
            return Answer(401, body={"message": "Bad credentials"})
        if seen.headers.get("accept") != "application/vnd.github+json":
            return Answer(415, body={"message": f"unexpected Accept: {seen.headers.get('accept')}"})
        try:
            body = seen.json()
        except ValueError:
            return Answer(400, body={"message": "Problems parsing JSON"})
        payload = body.get("client_payload", {})
        if not isinstance(body.get("event_type"), str) or not isinstance(payload, dict) or len(payload) > 10:
            return Answer(422, body={"message": "Invalid request.\n\nFor 'properties/client_payload'."})
        return self.script.pop(0) if self.script else Answer(204)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
        )
        answer = self.server.fake.answer(seen)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.status == 204:
            self.end_headers()
            return
        data = json.dumps(answer.body or {}).encode()
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET = do_PUT = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGitHub


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeGitHub(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def send(github: FakeGitHub, event: str = "drift-detected", payload: dict[str, Any] | None = None, **kw: Any):
    options = {"repository": REPO, "token": TOKEN, "api_url": github.url, "backoff_s": 0.01} | kw
    return dispatch(event, PAYLOAD if payload is None else payload, **options)


def assert_no_token(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    for text in (str(exc), repr(exc), "".join(traceback.format_exception(exc)), caplog.text):
        assert TOKEN not in text
        assert TOKEN[4:] not in text


def test_dispatch_sends_exactly_the_request_github_expects(github: FakeGitHub) -> None:
    result = send(github)

    assert (result.sent, result.status, result.attempts) == (True, 204, 1)
    [seen] = github.requests
    assert seen.method == "POST"
    assert seen.path == "/repos/acme/tradeloop/dispatches"
    assert seen.headers["accept"] == "application/vnd.github+json"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["x-github-api-version"] == "2022-11-28"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"].startswith("tradeloop-monitor/")
    assert seen.json() == {"event_type": "drift-detected", "client_payload": PAYLOAD}
    assert seen.body == result.request.body
    assert TOKEN not in repr(result)


def test_repository_token_and_api_url_come_from_the_environment(
    github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", github.url + "/")

    result = dispatch("performance-degraded", {"directional_accuracy": 0.48})

    assert result.status == 204
    [seen] = github.requests
    assert seen.path == "/repos/acme/tradeloop/dispatches"
    assert seen.json()["event_type"] == "performance-degraded"


def test_server_error_is_retried_until_github_accepts(
    github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    github.script = [Answer(500, body={"message": "Server Error"})]

    result = send(github)

    assert (result.status, result.attempts, len(github.requests)) == (204, 2, 2)
    assert github.requests[0].body == github.requests[1].body
    assert "retry 1/4" in caplog.text
    assert TOKEN not in caplog.text


def test_retries_run_out_with_dispatch_failed(github: FakeGitHub) -> None:
    github.script = [Answer(503)] * 3

    with pytest.raises(DispatchFailed) as caught:
        send(github, retries=2)

    assert (caught.value.attempts, caught.value.status, len(github.requests)) == (3, 503, 3)
    assert "GitHub answered 503" in str(caught.value)


def test_429_waits_as_long_as_retry_after_says(github: FakeGitHub) -> None:
    github.script = [Answer(429, {"Retry-After": "1"}, {"message": "slow down"})]

    started = time.monotonic()
    result = send(github, backoff_s=0.001)

    assert time.monotonic() - started >= 0.95
    assert (result.status, len(github.requests)) == (204, 2)


def test_retry_after_is_capped_by_max_wait(github: FakeGitHub) -> None:
    github.script = [Answer(429, {"Retry-After": "3600"})]

    started = time.monotonic()
    result = send(github, max_wait_s=0.05)

    assert time.monotonic() - started < 5
    assert (result.status, len(github.requests)) == (204, 2)


def test_rate_limited_403_is_retried_not_treated_as_a_refused_token(github: FakeGitHub) -> None:
    reset = str(int(time.time()))
    limited = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
    github.script = [Answer(403, limited, {"message": "API rate limit exceeded"})]

    result = send(github)

    assert (result.status, len(github.requests)) == (204, 2)


def test_refused_token_is_reported_without_the_token(
    github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = TOKEN[:-4] + "XXXX"

    with pytest.raises(DispatchRefused) as caught:
        send(github, token=wrong)

    exc = caught.value
    assert exc.status == 401
    assert "token was refused" in str(exc)
    assert "Bad credentials" in str(exc)
    assert len(github.requests) == 1, "a refused token is not retried"
    for text in (str(exc), repr(exc), "".join(traceback.format_exception(exc)), caplog.text):
        assert wrong not in text
        assert wrong[4:] not in text
    assert_no_token(exc, caplog)


def test_forbidden_token_is_refused_at_once(github: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    github.script = [Answer(403, body={"message": "Resource not accessible by personal access token"})]

    with pytest.raises(DispatchRefused) as caught:
        send(github)

    assert caught.value.status == 403
    assert "token was refused" in str(caught.value)
    assert "Resource not accessible" in str(caught.value)
    assert len(github.requests) == 1
    assert_no_token(caught.value, caplog)


def test_unknown_repository_says_not_found_or_not_visible(github: FakeGitHub) -> None:
    with pytest.raises(DispatchRefused) as caught:
        send(github, repository="acme/elsewhere")

    assert caught.value.status == 404
    assert "not found, or the token cannot see it" in str(caught.value)
    assert len(github.requests) == 1


def test_rejected_event_carries_githubs_message(github: FakeGitHub) -> None:
    github.script = [
        Answer(422, body={"message": "Validation Failed", "errors": [{"message": "event_type is too long"}]})
    ]

    with pytest.raises(DispatchRefused) as caught:
        send(github)

    assert caught.value.status == 422
    assert "rejected the event type or its client_payload" in str(caught.value)
    assert "Validation Failed; event_type is too long" in str(caught.value)
    assert len(github.requests) == 1


def test_unreachable_github_fails_after_retries_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there

    with pytest.raises(DispatchFailed) as caught:
        dispatch(
            "drift-detected", PAYLOAD, repository=REPO, token=TOKEN, api_url=f"http://127.0.0.1:{port}",
            retries=1, backoff_s=0.01,
        )  # fmt: skip

    assert caught.value.attempts == 2
    assert caught.value.status is None
    assert "ConnectError" in str(caught.value)
    assert_no_token(caught.value, caplog)


def test_dry_run_returns_the_request_and_sends_nothing(github: FakeGitHub) -> None:
    result = send(github, dry_run=True)

    assert github.requests == []
    assert (result.sent, result.status, result.attempts) == (False, None, 0)
    assert result.to_dict()["request"] == {
        "method": "POST",
        "url": f"{github.url}/repos/acme/tradeloop/dispatches",
        "headers": {
            "Accept": "application/vnd.github+json",
            "Content-Type": "application/json",
            "User-Agent": result.request.headers["User-Agent"],
            "X-GitHub-Api-Version": "2022-11-28",
            "Authorization": "Bearer ***",
        },
        "body": {"event_type": "drift-detected", "client_payload": PAYLOAD},
    }
    assert TOKEN not in repr(result)
    assert TOKEN not in json.dumps(result.to_dict())


def test_more_than_ten_payload_keys_are_refused_before_any_request(github: FakeGitHub) -> None:
    with pytest.raises(InvalidInput) as caught:
        send(github, payload={f"k{i}": i for i in range(11)})

    assert caught.value.field == "client_payload"
    assert "11 top-level keys" in str(caught.value)
    assert github.requests == []
    assert send(github, payload={f"k{i}": i for i in range(10)}).status == 204


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event": "retrain-now"}, "event_type"),
        ({"payload": {"psi": float("nan")}}, "client_payload"),
        ({"payload": {"when": object()}}, "client_payload"),
        ({"repository": "not-a-repo"}, "repository"),
        ({"api_url": "http://github.example.com"}, "api_url"),
        ({"token": ""}, "token"),
    ],
)
def test_bad_arguments_are_invalid_input_naming_the_field(
    github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], field: str
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with pytest.raises(InvalidInput) as caught:
        send(github, **kwargs)

    assert caught.value.field == field
    assert github.requests == []


def test_a_token_that_cannot_be_a_header_is_refused_without_echoing_it(github: FakeGitHub) -> None:
    with pytest.raises(InvalidInput) as caught:
        send(github, token=TOKEN + "\nX-Injected: 1")

    assert caught.value.field == "token"
    assert TOKEN not in str(caught.value)
    assert github.requests == []


def test_a_client_passed_in_is_used_and_left_open(github: FakeGitHub) -> None:
    with httpx.Client(timeout=5) as client:
        assert send(github, client=client).status == 204
        assert not client.is_closed
