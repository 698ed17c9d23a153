"""The model store: the one adapter over MLflow's tracking server and model registry.

Embedded default: ``sqlite:///HOME/mlflow.db`` with artifacts under ``HOME/mlartifacts`` and no
server. ``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` point it at a tracking server instead.
Registered model ``tradeloop``; alias ``champion`` is what serving loads, ``challenger`` the
latest candidate. Every gate decision, promotion and rollback is written as model-version tags,
and the champion history is a registered-model tag, so ``rollback`` needs no other state.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradeloop.bundle import verify_bundle
from tradeloop.config import Settings
from tradeloop.errors import InvalidInput, ModelNotReady

__all__ = ["CHALLENGER", "CHAMPION", "MODEL_NAME", "ModelVersionInfo", "Registry"]

MODEL_NAME = "tradeloop"
EXPERIMENT = "tradeloop"
CHAMPION, CHALLENGER = "champion", "challenger"
_HISTORY = "champion.history"


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
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

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
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
        mv = self.client.create_model_version(
            MODEL_NAME, f"{run.info.artifact_uri}/bundle", run_id=run_id, tags=tags or {}
        )
        self.client.set_registered_model_alias(MODEL_NAME, CHALLENGER, mv.version)
        return self.get(mv.version)

    def record(self, version: str, tags: dict[str, Any]) -> None:
        """Write ``tags`` (a gate decision and its numbers) onto ``version``."""
        for key, value in tags.items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            self.client.set_model_version_tag(MODEL_NAME, version, key, text[:5000])

    def promote(self, version: str, *, reason: str) -> None:
        """Point ``champion`` at ``version`` and remember the one it replaces for rollback."""
        self.get(version)
        history = self._history()
        if history and history[-1] == version:
            return
        history.append(version)
        self.client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        self.client.set_registered_model_tag(MODEL_NAME, _HISTORY, json.dumps(history))
        self.record(
            version, {"promoted.reason": reason, "promoted.replaced": history[-2] if len(history) > 1 else ""}
        )

    def rollback(self) -> tuple[str, str]:
        """Move ``champion`` back to the previous champion; returns (from, to)."""
        history = self._history()
        if len(history) < 2:
            raise ModelNotReady("no previous champion to roll back to")
        current = history.pop()
        previous = history[-1]
        self.client.set_registered_model_alias(MODEL_NAME, CHAMPION, previous)
        self.client.set_registered_model_tag(MODEL_NAME, _HISTORY, json.dumps(history))
        self.record(current, {"rolled_back.to": previous})
        self.record(previous, {"restored.from": current})
        return current, previous

    # -- reading ---------------------------------------------------------------------------------
    def _history(self) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(MODEL_NAME)
        except MlflowException:
            return []
        return json.loads(model.tags.get(_HISTORY, "[]"))

    def get(self, version: str) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(MODEL_NAME, str(version))
        except MlflowException as exc:
            raise InvalidInput("version", f"{MODEL_NAME} has no version {version!r}") from exc
        return ModelVersionInfo(
            mv.version, mv.run_id, mv.source, mv.creation_timestamp, tuple(mv.aliases), dict(mv.tags)
        )

    def alias(self, name: str) -> ModelVersionInfo | None:
        """The version behind ``name`` (``champion``/``challenger``), or None when unset."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(MODEL_NAME, name)
        except MlflowException:
            return None
        return self.get(mv.version)

    def versions(self) -> list[ModelVersionInfo]:
        """Every registered version, newest first."""
        found = self.client.search_model_versions(f"name='{MODEL_NAME}'")
        return sorted((self.get(mv.version) for mv in found), key=lambda v: -int(v.version))

    def download(self, version: str, dst: Path | None = None) -> Path:
        """The bundle of ``version`` in a local directory, sha256-verified."""
        from mlflow.artifacts import download_artifacts

        info = self.get(version)
        target = Path(dst or tempfile.mkdtemp(prefix=f"tradeloop-v{version}-"))
        path = Path(download_artifacts(artifact_uri=info.source, dst_path=str(target), tracking_uri=self.uri))
        verify_bundle(path)
        return path

    def run_metrics(self, version: str) -> dict[str, float]:
        return dict(self.client.get_run(self.get(version).run_id).data.metrics)
