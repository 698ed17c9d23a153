"""Typed settings, read when asked for (never at import time).

``Settings`` resolves the tradeloop home directory from the CLI option, then ``TRADELOOP_HOME``,
then ``./.tradeloop``, and derives every path under it so that no other module builds paths by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings"]

DEFAULT_HOME = ".tradeloop"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where tradeloop keeps its state; every path is derived from ``home``."""

    home: Path

    @classmethod
    def load(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """Settings from an explicit ``home``, else ``TRADELOOP_HOME``, else ``./.tradeloop``."""
        chosen = home or os.environ.get("TRADELOOP_HOME") or DEFAULT_HOME
        return cls(home=Path(chosen).expanduser().resolve())

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def bars_dir(self) -> Path:
        """Canonical bars: ``bars/timeframe=TF/symbol=SYM/*.parquet``."""
        return self.data_dir / "bars"

    @property
    def quarantine_dir(self) -> Path:
        """Rejected bars, each with its reason code."""
        return self.data_dir / "quarantine"

    @property
    def features_dir(self) -> Path:
        """Offline features: ``features/timeframe=TF/symbol=SYM/*.parquet``."""
        return self.data_dir / "features"

    @property
    def symbols_path(self) -> Path:
        """The symbols table (asset class and venue per symbol)."""
        return self.data_dir / "symbols.json"

    @property
    def windows_dir(self) -> Path:
        """Recent CNN windows per series, the offline source of the ``bar_window`` view."""
        return self.data_dir / "windows"

    @property
    def feast_dir(self) -> Path:
        """Embedded Feast registry and SQLite online store."""
        return self.home / "feast"

    @property
    def ingest_state_dir(self) -> Path:
        """Persisted streaming-feature state of live ingest, one JSON file per series."""
        return self.home / "state" / "ingest"

    @property
    def mlflow_uri(self) -> str:
        """Embedded MLflow tracking/registry store (SQLite, no server)."""
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def runs_dir(self) -> Path:
        """Training runs: bundle, report and Ray checkpoints of each."""
        return self.home / "runs"

    @property
    def ray_results_dir(self) -> Path:
        return self.home / "ray_results"

    @property
    def report_dir(self) -> Path:
        """The whole-loop HTML report (``index.html``) and the inputs it is built from."""
        return self.home / "report"

    @property
    def demo_dir(self) -> Path:
        """The demo's stage checkpoints and the measurements it hands to the report."""
        return self.home / "demo"
