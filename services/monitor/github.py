"""The one adapter to GitHub's ``repository_dispatch`` API: how the monitor asks for a retrain.

:func:`dispatch` POSTs ``{api}/repos/{owner}/{repo}/dispatches``; ``retrain.yml`` listens for the
event types in :data:`EVENT_TYPES`. What a caller can rely on:

- Arguments are checked before anything is sent (event type, repository, token, API URL, and a
  ``client_payload`` of at most 10 top-level keys with JSON values, under 64 KB: GitHub's limits);
  a bad one raises :class:`~tradeloop.errors.InvalidInput` naming it.
- Success is GitHub's 204 and nothing else.
- Transient trouble (5xx, 408, 429, a rate-limited 403, connection errors and timeouts) is retried
  with exponential backoff, honouring ``Retry-After`` / ``x-ratelimit-reset`` up to ``max_wait_s``;
  when the retries run out, :class:`DispatchFailed`. A request whose answer was lost may still have
  been delivered, so a retry can dispatch twice; retrain.yml's single concurrency group makes a
  duplicate queue behind the first run instead of overlapping it.
- A refusal (401/403: token refused; 404: repository not found or not visible to the token; 422:
  event or payload rejected, with GitHub's message) raises :class:`DispatchRefused` at once:
  retrying cannot help, the configuration must change.
- The token never appears in an exception message, a repr, a dry-run request or a log line.

Its exception types (``DispatchRefused``, ``DispatchFailed``) live in :mod:`tradeloop.errors`, the
one mapping point.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tradeloop import __version__
from tradeloop.errors import DispatchFailed, DispatchRefused, InvalidInput, TradeloopError

__all__ = [
    "EVENT_TYPES",
    "MAX_PAYLOAD_KEYS",
    "DispatchFailed",
    "DispatchRefused",
    "DispatchRequest",
    "DispatchResult",
    "dispatch",
]

logger = logging.getLogger(__name__)

EVENT_TYPES = ("drift-detected", "performance-degraded")
MAX_PAYLOAD_KEYS = 10  # GitHub: "The maximum number of top-level properties is 10."
MAX_PAYLOAD_BYTES = 64 * 1024  # GitHub: "The total size of the JSON payload must be less than 64KB."
API_VERSION = "2022-11-28"
DEFAULT_API_URL = "https://api.github.com"
REDACTED = "***"

_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: anything else cannot go in a header
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class DispatchRequest:
    """The exact request :func:`dispatch` sends, with the token redacted (what dry-run returns)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def to_dict(self) -> dict[str, Any]:
        body = json.loads(self.body)
        return {"method": self.method, "url": self.url, "headers": dict(self.headers), "body": body}


@dataclass(frozen=True)
class DispatchResult:
    """What happened: ``sent`` is False for a dry run; ``status`` is GitHub's answer (204)."""

    request: DispatchRequest
    sent: bool
    status: int | None = None
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "status": self.status,
            "attempts": self.attempts,
            "request": self.request.to_dict(),
        }


class _Token:
    """A token that never shows itself: its repr is redacted, only :meth:`bearer` reads it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"<token {REDACTED}>"

    __str__ = __repr__

    def bearer(self) -> str:
        return f"Bearer {self._value}"

    def scrub(self, text: str) -> str:
        """``text`` with the token replaced, for anything built from text we did not write."""
        return text.replace(self._value, REDACTED) if self._value else text


def dispatch(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    repository: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    dry_run: bool = False,
    retries: int = 4,
    backoff_s: float = 1.0,
    max_wait_s: float = 60.0,
    timeout_s: float = 10.0,
    client: httpx.Client | None = None,
) -> DispatchResult:
    """Send a ``repository_dispatch`` event and return once GitHub has accepted it (204).

    ``repository`` (``owner/name``), ``token`` and ``api_url`` default to ``GITHUB_REPOSITORY``,
    ``GITHUB_TOKEN`` and ``GITHUB_API_URL`` (else ``https://api.github.com``), read at call time.
    ``retries`` is the number of retries after the first attempt; the n-th waits
    ``backoff_s * 2**(n-1)`` seconds, or what GitHub asked for, never more than ``max_wait_s``.
    ``dry_run`` builds the request and returns it unsent (no token needed). A ``client`` passed in
    is used as is and left open; otherwise one is made with ``timeout_s`` and closed.
    """
    repo = _repository(repository)
    base = _api_url(api_url)
    body = _body(event_type, payload)
    secret = _token(token, required=not dry_run)
    if retries < 0 or backoff_s < 0 or max_wait_s < 0:
        raise InvalidInput("retries", "retries, backoff_s and max_wait_s must not be negative")
    headers = {
        "Accept": "application/vnd.github+json",
        "Content-Type": "application/json",
        "User-Agent": f"tradeloop-monitor/{__version__}",
        "X-GitHub-Api-Version": API_VERSION,
    }
    shown = f"Bearer {REDACTED}" if secret is not None else "Bearer (GITHUB_TOKEN not set)"
    url = f"{base}/repos/{repo}/dispatches"
    request = DispatchRequest("POST", url, headers | {"Authorization": shown}, body)
    if dry_run:
        return DispatchResult(request, sent=False)
    assert secret is not None  # _token(required=True) raised otherwise
    http = client if client is not None else httpx.Client(timeout=timeout_s)
    try:
        return _send(http, request, headers, secret, repo, retries, backoff_s, max_wait_s)
    finally:
        if client is None:
            http.close()


def _send(
    http: httpx.Client,
    request: DispatchRequest,
    headers: dict[str, str],
    secret: _Token,
    repo: str,
    retries: int,
    backoff_s: float,
    max_wait_s: float,
) -> DispatchResult:
    attempts = 0
    while True:
        attempts += 1
        status: int | None = None
        hint: float | None = None
        try:
            response = http.post(
                request.url, content=request.body, headers=headers | {"Authorization": secret.bearer()}
            )
        except httpx.TransportError as exc:
            problem = secret.scrub(f"could not reach {request.url}: {type(exc).__name__}: {exc}")
        else:
            status = response.status_code
            if status == 204:
                logger.info("dispatched %s to %s (attempt %d)", _event(request), repo, attempts)
                return DispatchResult(request, sent=True, status=status, attempts=attempts)
            if not _transient(response):
                raise _unexpected(response, repo, secret, attempts)
            problem, hint = f"GitHub answered {status}", _server_wait(response.headers)
        if attempts > retries:
            raise DispatchFailed(problem, repository=repo, attempts=attempts, status=status)
        wait = min(max_wait_s, hint if hint is not None else backoff_s * 2 ** (attempts - 1))
        logger.warning("dispatch to %s: %s; retry %d/%d in %.2f s", repo, problem, attempts, retries, wait)
        time.sleep(wait)


def _transient(response: httpx.Response) -> bool:
    """Worth retrying: server errors, timeouts, rate limits (429, or 403 with rate-limit headers)."""
    status = response.status_code
    if status >= 500 or status in (408, 429):
        return True
    limited = "retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0"
    return status == 403 and limited


def _server_wait(headers: httpx.Headers) -> float | None:
    """Seconds GitHub asked us to wait: ``Retry-After`` (seconds or a date), else the rate-limit reset."""
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        return float(retry_after)
    if retry_after:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(0.0, float(reset) - time.time())
    return None


def _unexpected(response: httpx.Response, repo: str, secret: _Token, attempts: int) -> TradeloopError:
    """The typed error for a final answer that is neither 204 nor worth a retry."""
    status = response.status_code
    said = _github_message(response, secret)
    if status in (401, 403):
        why = "missing, expired or revoked" if status == 401 else "not allowed to dispatch to this repository"
        reason = (
            f"the token was refused ({why}); it needs Contents: read and write on the repository"
            " (a classic token: the repo scope)"
        )
    elif status == 404:
        reason = "the repository was not found, or the token cannot see it"
    elif status == 422:
        reason = "GitHub rejected the event type or its client_payload"
    elif 400 <= status < 500:
        reason = "GitHub refused the request"
    else:
        detail = f"; GitHub said: {said}" if said else ""
        where = response.headers.get("location")
        detail += f"; redirected to {where} (check GITHUB_API_URL and the repository name)" if where else ""
        return DispatchFailed(
            f"unexpected answer {status}{detail}", repository=repo, attempts=attempts, status=status
        )
    return DispatchRefused(status, reason, repository=repo, github_message=said)


def _github_message(response: httpx.Response, secret: _Token) -> str | None:
    """GitHub's ``message`` plus its ``errors``, or the start of a non-JSON body; token scrubbed."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()[:300]
        return secret.scrub(text) or None
    if not isinstance(data, dict):
        return secret.scrub(json.dumps(data)[:300])
    parts = [str(data["message"])] if data.get("message") else []
    for error in data.get("errors") or []:
        parts.append((error.get("message") or json.dumps(error)) if isinstance(error, dict) else str(error))
    return secret.scrub("; ".join(parts)[:500]) or None


def _event(request: DispatchRequest) -> str:
    return json.loads(request.body)["event_type"]


def _repository(repository: str | None) -> str:
    repo = (repository if repository is not None else os.environ.get("GITHUB_REPOSITORY", "")).strip()
    if not repo:
        raise InvalidInput("repository", "no repository given and GITHUB_REPOSITORY is not set (owner/name)")
    if not _REPOSITORY.fullmatch(repo) or repo.split("/")[1] in (".", ".."):
        raise InvalidInput("repository", f"{repo!r} is not a GitHub repository name of the form owner/name")
    return repo


def _api_url(api_url: str | None) -> str:
    raw = (api_url if api_url is not None else os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).strip()
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise InvalidInput("api_url", f"{raw!r} is not a URL: {exc}") from None
    secure = url.scheme == "https" or (url.scheme == "http" and url.host in _LOOPBACK)
    if secure and url.host and not url.query and not url.fragment:
        return raw.rstrip("/")
    raise InvalidInput(
        "api_url",
        f"{raw!r} must be an https:// base URL (plain http only on loopback: the token rides on it)",
    )


def _token(token: str | None, *, required: bool) -> _Token | None:
    value = (token if token is not None else os.environ.get("GITHUB_TOKEN", "")).strip()
    if not value:
        if required:
            raise InvalidInput("token", "no token given and GITHUB_TOKEN is not set")
        return None
    if not _TOKEN_CHARS.fullmatch(value):
        raise InvalidInput("token", "the token contains whitespace or non-ASCII characters")
    return _Token(value)


def _body(event_type: str, payload: Mapping[str, Any]) -> bytes:
    if event_type not in EVENT_TYPES:
        raise InvalidInput("event_type", f"{event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    if not isinstance(payload, Mapping):
        kind = type(payload).__name__
        raise InvalidInput("client_payload", f"must be a mapping (a JSON object), not {kind}")
    if len(payload) > MAX_PAYLOAD_KEYS:
        raise InvalidInput(
            "client_payload",
            f"has {len(payload)} top-level keys; GitHub accepts at most {MAX_PAYLOAD_KEYS}"
            " (nest the rest under one key)",
        )
    for key, value in payload.items():
        if not isinstance(key, str):
            raise InvalidInput("client_payload", f"key {key!r} is not a string")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            reason = f"value of {key!r} is not JSON-serialisable: {exc}"
            raise InvalidInput("client_payload", reason) from None
    client_payload = json.dumps(dict(payload), allow_nan=False, separators=(",", ":"))
    size = len(client_payload.encode())
    if size >= MAX_PAYLOAD_BYTES:
        raise InvalidInput("client_payload", f"is {size} bytes; GitHub takes less than 64 KB")
    return f'{{"event_type":{json.dumps(event_type)},"client_payload":{client_payload}}}'.encode()
