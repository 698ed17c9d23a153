"""The GitHub Actions workflows: GitHub's schema, the zizmor security linter, and our pinning rules.

The tools run as subprocesses (versions pinned in requirements.lock), offline; a missing tool skips
locally and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, require

WORKFLOWS = REPO / ".github" / "workflows"
FILES = [WORKFLOWS / "ci.yml", WORKFLOWS / "retrain.yml"]
PINNED = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")


def _tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    require(found is not None, f"{name} is not installed (pip install -r requirements.lock)")
    assert found is not None
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"NO_COLOR": "1"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def _steps(path: Path) -> list[tuple[str, dict[str, Any]]]:
    workflow = yaml.safe_load(path.read_text())
    return [(job, step) for job, spec in workflow["jobs"].items() for step in spec.get("steps", [])]


def test_both_workflows_exist() -> None:
    missing = [str(p.relative_to(REPO)) for p in FILES if not p.is_file()]
    assert not missing, f"missing workflows: {missing}"


def test_workflows_match_githubs_workflow_schema() -> None:
    result = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, FILES))
    assert result.returncode == 0, f"check-jsonschema failed:\n{result.stdout}\n{result.stderr}"


def test_zizmor_finds_nothing_offline() -> None:
    zizmor = _tool("zizmor")
    result = _run(zizmor, "--offline", "--no-progress", "--color", "never", str(WORKFLOWS))
    assert result.returncode == 0, f"zizmor findings:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_its_version(path: Path) -> None:
    lines = path.read_text().splitlines()
    uses = [line.strip() for line in lines if re.match(r"\s*(- )?uses:", line)]
    assert uses, f"{path.name} uses no actions?"
    for line in uses:
        ref = line.split("uses:", 1)[1].split("#", 1)[0].strip()
        assert PINNED.fullmatch(ref), f"{path.name}: not pinned by a full commit SHA: {line}"
        assert re.search(r"#\s*v\d+(\.\d+)*\s*$", line), f"{path.name}: no version comment: {line}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_scripts_take_values_from_env_never_from_expressions(path: Path) -> None:
    for job, step in _steps(path):
        script = step.get("run", "")
        assert "${{" not in script, f"{path.name} job {job}: an expression inside run: (pass it via env:)"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_checkouts_do_not_persist_credentials(path: Path) -> None:
    for job, step in _steps(path):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{path.name} job {job}"


def test_retrains_never_overlap() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "retrain.yml").read_text())
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert "${{" not in workflow["concurrency"]["group"], "one fixed group for every trigger"
