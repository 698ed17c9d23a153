"""The tradeloop exception hierarchy, and the one place that maps it to HTTP and gRPC codes.

Every error a caller can act on is a ``TradeloopError`` subclass that carries the context needed
to act (the field, the file, the reason). Front ends (CLI, KServe, Ray Serve) never translate
exceptions themselves: they call :func:`http_status` / :func:`grpc_code` / :func:`exit_code`.

    TradeloopError
    ├── InvalidInput            400 / INVALID_ARGUMENT / exit 2   bad request or bad file
    │   ├── UnusableFile        a whole input file cannot be read as bars
    │   ├── UnknownSeries       a series that is not stored / served
    │   └── RequestTooLarge     413 / RESOURCE_EXHAUSTED / exit 2   more rows than the server takes
    ├── DataQualityError        400 / FAILED_PRECONDITION / exit 2   data that fails checks
    ├── StaleFeatures           503 / UNAVAILABLE / exit 3
    ├── ModelNotReady           503 / UNAVAILABLE / exit 3
    ├── BundleIntegrityError    503 / UNAVAILABLE / exit 3   a broken model artifact is refused
    ├── DispatchRefused         502 / FAILED_PRECONDITION / exit 4   GitHub refused: fix token/repo
    └── DispatchFailed          503 / UNAVAILABLE / exit 3   GitHub not reached after retries
"""

from __future__ import annotations

__all__ = [
    "BundleIntegrityError",
    "DataQualityError",
    "DispatchFailed",
    "DispatchRefused",
    "InvalidInput",
    "ModelNotReady",
    "RequestTooLarge",
    "StaleFeatures",
    "TradeloopError",
    "UnknownSeries",
    "UnusableFile",
    "exit_code",
    "grpc_code",
    "http_status",
]


class TradeloopError(Exception):
    """Base of every error tradeloop raises on purpose."""


class InvalidInput(TradeloopError):
    """The caller sent something we cannot use; ``field`` names what and ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class UnusableFile(InvalidInput):
    """A whole input file cannot be read as bars (unreadable, no OHLCV columns, bad timestamps)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(path, reason)


class UnknownSeries(InvalidInput):
    """A ``SYMBOL:TF`` series that is not known here."""

    def __init__(self, series_id: str, reason: str = "unknown series") -> None:
        self.series_id = series_id
        super().__init__("series", f"{series_id}: {reason}")


class RequestTooLarge(InvalidInput):
    """A request with more rows than the server accepts at once."""


class DataQualityError(TradeloopError):
    """Data that was readable but fails a quality gate (for example feature parity)."""


class DispatchRefused(TradeloopError):
    """GitHub answered and refused the dispatch; retrying will not help, configuration must change.

    ``status`` is GitHub's HTTP status, ``reason`` what it means for the caller, and
    ``github_message`` what GitHub said (``message`` and ``errors`` of its JSON body), if anything.
    """

    def __init__(self, status: int, reason: str, *, repository: str, github_message: str | None = None):
        self.status = status
        self.reason = reason
        self.repository = repository
        self.github_message = github_message
        said = f" GitHub said: {github_message}" if github_message else ""
        super().__init__(f"repository_dispatch to {repository} refused ({status}): {reason}.{said}")


class DispatchFailed(TradeloopError):
    """The dispatch could not be delivered (GitHub unavailable, rate limited, unreachable, or an
    unexpected answer); ``attempts`` were made and ``status`` is the last HTTP status, if any."""

    def __init__(self, reason: str, *, repository: str, attempts: int, status: int | None = None):
        self.reason = reason
        self.repository = repository
        self.attempts = attempts
        self.status = status
        super().__init__(f"repository_dispatch to {repository} failed after {attempts} attempt(s): {reason}")


class StaleFeatures(TradeloopError):
    """Online features are older than the allowed age."""


class ModelNotReady(TradeloopError):
    """No model is loaded yet, or the registry has no champion."""


class BundleIntegrityError(TradeloopError):
    """A model bundle whose files or checksums do not match its manifest."""


# The single mapping point: (HTTP status, gRPC status name, CLI exit code), most specific first.
_CODES: tuple[tuple[type[TradeloopError], int, str, int], ...] = (
    (RequestTooLarge, 413, "RESOURCE_EXHAUSTED", 2),
    (InvalidInput, 400, "INVALID_ARGUMENT", 2),
    (DataQualityError, 400, "FAILED_PRECONDITION", 2),
    (StaleFeatures, 503, "UNAVAILABLE", 3),
    (ModelNotReady, 503, "UNAVAILABLE", 3),
    (BundleIntegrityError, 503, "UNAVAILABLE", 3),
    (DispatchRefused, 502, "FAILED_PRECONDITION", 4),
    (DispatchFailed, 503, "UNAVAILABLE", 3),
)


def _lookup(exc: BaseException) -> tuple[int, str, int]:
    for kind, http, grpc, code in _CODES:
        if isinstance(exc, kind):
            return http, grpc, code
    return 500, "INTERNAL", 1


def http_status(exc: BaseException) -> int:
    """HTTP status for ``exc``: 4xx for the caller's mistakes, 503 for not-ready, else 500."""
    return _lookup(exc)[0]


def grpc_code(exc: BaseException) -> str:
    """gRPC status code name (``grpc.StatusCode[...]``) for ``exc``."""
    return _lookup(exc)[1]


def exit_code(exc: BaseException) -> int:
    """CLI exit status for ``exc``: 2 for unusable input, 3 for not-ready, 1 otherwise."""
    return _lookup(exc)[2]
