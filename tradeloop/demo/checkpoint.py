"""Which demo stages finished, and what each one found, in ``HOME/demo/stages.json``.

A stage is recorded only after it finished, and the file is replaced atomically, so a demo killed
at any point re-runs exactly the stage it was in (every stage is safe to repeat) and skips the
ones before it. The mode (full or fast) is part of the file: the two use different bars, so one
home never mixes them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradeloop.bars.store import write_text_atomic
from tradeloop.errors import InvalidInput

__all__ = ["Checkpoint"]


class Checkpoint:
    """Finished stages of one demo home, each with the summary its stage returned."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.mode = mode
        self.stages: dict[str, dict[str, Any]] = {}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("mode") != mode:
                raise InvalidInput(
                    "DEMO_FAST",
                    f"{path.parent.parent} holds a {saved.get('mode')} demo and this run is {mode}: "
                    "use another --home, or --fresh to start over",
                )
            self.stages = saved.get("stages", {})

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def get(self, stage: str) -> dict[str, Any]:
        return self.stages.get(stage, {})

    def record(self, stage: str, summary: dict[str, Any]) -> None:
        self.stages[stage] = summary | {"finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            json.dumps({"mode": self.mode, "stages": self.stages}, indent=2, default=str), self.path
        )
