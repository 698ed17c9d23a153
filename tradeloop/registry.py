"""The model store: the one adapter over MLflow's tracking server and model registry.

Embedded default: ``sqlite:///HOME/mlflow.db`` with artifacts under ``HOME/mlartifacts`` and no
server. ``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` point it at a tracking server instead.
Registered model ``tradeloop``; alias ``champion`` is what serving loads, ``challenger`` the
latest candidate. Every gate decision, promotion and rollback is written as model-version tags,
and the champion history is a registered-model tag, so ``rollback`` needs no other state.

Failures: only MLflow's own "does not exist" answer means "nothing there" (no champion alias, no
history, no such version). Any other failure to read or write the store (connection refused, a
5xx, a broken database) raises :class:`ModelNotReady` naming the store, so an outage is never
mistaken for "no champion yet" and can never promote a model. Against a tracking server, MLflow's
HTTP retry settings get short defaults (``MLFLOW_HTTP_REQUEST_*`` below, process-wide, only
where unset) so that an outage fails within seconds instead of retrying for minutes.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tradeloop.bundle import verify_bundle
from tradeloop.config import Settings
from tradeloop.errors import InvalidInput, ModelNotReady, TradeloopError

__all__ = ["CHALLENGER", "CHAMPION", "MODEL_NAME", "ModelVersionInfo", "Registry"]

MODEL_NAME = "tradeloop"
EXPERIMENT = "tradeloop"
CHAMPION, CHALLENGER = "champion", "challenger"
_HISTORY = "champion.history"

# What MLflow 3.17 answers (SQLite store and REST store alike) when the thing is simply not there:
# a missing registered model or model version is RESOURCE_DOES_NOT_EXIST; a missing alias on an
# existing model is INVALID_PARAMETER_VALUE ("Registered model alias champion not found.").
_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
_ALIAS_NOT_SET = "INVALID_PARAMETER_VALUE"
# Defaults for a tracking server, set only where the user has not: MLflow's own (7 retries with
# backoff factor 2, 120 s timeout) keep a dead server busy for minutes. These fail in ~5-10 s.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def _code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


def _outages() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the store could not be reached or read" (besides MlflowException).

    MLflow wraps most transport failures in ``MlflowException``, but not all: artifact calls let
    ``requests.HTTPError`` through for statuses it does not retry (401, 403, 404, 501, ...), and
    opening a SQLite file that is not a database raises ``sqlalchemy.exc.DatabaseError`` as is.
    """
    import requests
    import urllib3

    kinds: list[type[BaseException]] = [requests.exceptions.RequestException, urllib3.exceptions.HTTPError]
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:  # pragma: no cover - mlflow-skinny against a server
        pass
    else:
        kinds.append(DBAPIError)
    return tuple(kinds)


def _redact(uri: str) -> str:
    """``uri`` without a password (``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser() or "unknown"
    except Exception:  # getpass raises OSError/KeyError when no user can be found
        return "unknown"


@dataclass(frozen=True, slots=True)
class ModelVersionInfo:
    """One registered bundle as the CLI and gate see it."""

    version: str
    run_id: str
    source: str
    created: int
    aliases: tuple[str, ...]
    tags: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "created": self.created,
            "aliases": list(self.aliases),
            "tags": self.tags,
        }


class Registry:
    """MLflow tracking + registry for tradeloop bundles."""

    def __init__(self, settings: Settings, uri: str | None = None) -> None:
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow_uri
        self.artifacts = settings.mlflow_artifacts_dir
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if self.uri.startswith(("http://", "https://")):
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        with self._store("opening it"):  # a SQLite store is opened (and checked) right here
            self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @contextmanager
    def _store(self, doing: str) -> Iterator[None]:
        """Turn a failure to reach or read the store into :class:`ModelNotReady`."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except TradeloopError:
            raise
        except (MlflowException, *_outages()) as exc:
            code = _code(exc)
            cause = f"{type(exc).__name__}{f' {code}' if code else ''}: {str(exc).splitlines()[0][:300]}"
            raise ModelNotReady(
                f"model registry {_redact(self.uri)} unavailable while {doing}: {cause}"
            ) from exc

    # -- writing ---------------------------------------------------------------------------------
    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return found.experiment_id
        location = self.artifacts.as_uri() if self.uri.startswith("sqlite") else None
        return self.client.create_experiment(EXPERIMENT, artifact_location=location)

    def register(
        self,
        bundle: Path,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        report: Path | None = None,
        tags: dict[str, str] | None = None,
    ) -> ModelVersionInfo:
        """Log a verified bundle (and its report) as a run, register it, alias it ``challenger``."""
        from mlflow.exceptions import MlflowException

        verify_bundle(bundle)
        with self._store(f"registering {bundle}"):
            run = self.client.create_run(self._experiment_id(), run_name=f"train-{params.get('preset', '')}")
            run_id = run.info.run_id
            for key, value in params.items():
                self.client.log_param(run_id, key, str(value)[:500])
            for key, value in metrics.items():
                self.client.log_metric(run_id, key, float(value))
            self.client.log_artifacts(run_id, str(bundle), "bundle")
            if report is not None:
                self.client.log_artifacts(run_id, str(report), "report")
            self.client.set_terminated(run_id)
            try:
                self.client.create_registered_model(MODEL_NAME)
            except MlflowException as exc:
                if _code(exc) != "RESOURCE_ALREADY_EXISTS":
                    raise
            mv = self.client.create_model_version(
                MODEL_NAME, f"{run.info.artifact_uri}/bundle", run_id=run_id, tags=tags or {}
            )
            self.client.set_registered_model_alias(MODEL_NAME, CHALLENGER, mv.version)
        return self.get(mv.version)

    def record(self, version: str, tags: dict[str, Any]) -> None:
        """Write ``tags`` (a gate decision and its numbers) onto ``version``."""
        with self._store(f"tagging version {version}"):
            for key, value in tags.items():
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                self.client.set_model_version_tag(MODEL_NAME, version, key, text[:5000])

    def promote(self, version: str, *, reason: str, manual: bool = False) -> bool:
        """Point ``champion`` at ``version`` and remember the one it replaces for rollback.

        ``manual`` marks a promotion by hand that bypassed the gate: the version gets
        ``promoted.manual = "true"`` with who did it and when. Returns False when ``version``
        already was the champion (nothing changes), True otherwise.
        """
        version = self.get(version).version
        history = self._history()
        current = self.alias(CHAMPION)
        if history and history[-1] == version:
            if current is not None and current.version == version:
                return False
            # An earlier promotion of this version stopped between the two writes: finish it.
        else:
            history.append(version)
        with self._store(f"promoting version {version}"):
            # History first: if the alias write then fails, a retry completes it (see above);
            # the other order could move champion with no way back recorded.
            self.client.set_registered_model_tag(MODEL_NAME, _HISTORY, json.dumps(history))
            self.client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        self.record(
            version,
            {
                "promoted.reason": reason,
                "promoted.replaced": history[-2] if len(history) > 1 else "",
                "promoted.manual": str(manual).lower(),
                "promoted.by": _user(),
                "promoted.at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        return True

    def rollback(self) -> tuple[str, str]:
        """Move ``champion`` back to the previous champion; returns (from, to)."""
        history = self._history()
        if len(history) < 2:
            raise ModelNotReady("no previous champion to roll back to")
        current = history.pop()
        previous = history[-1]
        with self._store(f"rolling back from version {current}"):
            self.client.set_registered_model_alias(MODEL_NAME, CHAMPION, previous)
            self.client.set_registered_model_tag(MODEL_NAME, _HISTORY, json.dumps(history))
        self.record(current, {"rolled_back.to": previous})
        self.record(previous, {"restored.from": current})
        return current, previous

    # -- reading ---------------------------------------------------------------------------------
    def history(self) -> list[str]:
        """Every version that was champion, oldest first (a rollback removes the newest)."""
        return self._history()

    def _history(self) -> list[str]:
        """Champion versions, oldest first; empty only when the model is not registered yet."""
        from mlflow.exceptions import MlflowException

        with self._store("reading the champion history"):
            try:
                model = self.client.get_registered_model(MODEL_NAME)
            except MlflowException as exc:
                if _code(exc) == _DOES_NOT_EXIST:
                    return []
                raise
        # Versions as text: the SQLite store hands out ints, the REST store strings.
        return [str(v) for v in json.loads(model.tags.get(_HISTORY, "[]"))]

    def get(self, version: str) -> ModelVersionInfo:
        """One version; :class:`InvalidInput` when there is no such version."""
        from mlflow.exceptions import MlflowException

        with self._store(f"reading version {version}"):
            try:
                mv = self.client.get_model_version(MODEL_NAME, str(version))
            except MlflowException as exc:
                # Not found, or not a version number at all ("must be an integer"): the caller's.
                if _code(exc) in {_DOES_NOT_EXIST, "INVALID_PARAMETER_VALUE"}:
                    raise InvalidInput("version", f"{MODEL_NAME} has no version {version!r}") from exc
                raise
        return ModelVersionInfo(
            str(mv.version), mv.run_id, mv.source, mv.creation_timestamp, tuple(mv.aliases), dict(mv.tags)
        )

    def alias(self, name: str) -> ModelVersionInfo | None:
        """The version behind ``name`` (``champion``/``challenger``), or None when it is not set.

        None only when MLflow says the alias (or the whole model) does not exist; a store that
        cannot be read raises :class:`ModelNotReady` instead, never "no champion".
        """
        from mlflow.exceptions import MlflowException

        with self._store(f"reading alias {name!r}"):
            try:
                mv = self.client.get_model_version_by_alias(MODEL_NAME, name)
            except MlflowException as exc:
                if _code(exc) in {_DOES_NOT_EXIST, _ALIAS_NOT_SET}:
                    return None
                raise
        return self.get(mv.version)

    def versions(self) -> list[ModelVersionInfo]:
        """Every registered version, newest first."""
        with self._store("listing versions"):
            found = self.client.search_model_versions(f"name='{MODEL_NAME}'")
        return sorted((self.get(mv.version) for mv in found), key=lambda v: -int(v.version))

    def download(self, version: str, dst: Path | None = None) -> Path:
        """The bundle of ``version`` in a local directory, sha256-verified."""
        from mlflow.artifacts import download_artifacts

        info = self.get(version)
        target = Path(dst or tempfile.mkdtemp(prefix=f"tradeloop-v{version}-"))
        with self._store(f"downloading version {version}"):
            path = Path(
                download_artifacts(artifact_uri=info.source, dst_path=str(target), tracking_uri=self.uri)
            )
        verify_bundle(path)
        return path

    def run_metrics(self, version: str) -> dict[str, float]:
        run_id = self.get(version).run_id
        with self._store(f"reading the metrics of version {version}"):
            return dict(self.client.get_run(run_id).data.metrics)
