"""The one image (Dockerfile, .dockerignore) and finding feature_repo/ without a source checkout.

No Docker engine runs here, so the image is checked by what its build would do: the context the
.dockerignore leaves, the instructions, and the feature repository found through
TRADELOOP_FEATURE_REPO from a copy outside the checkout, as in the image."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.k8s.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _ignored(path: str) -> bool:
    """Docker's rule for a top-level path: the last matching .dockerignore pattern wins."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    sources = {
        word
        for line in DOCKERFILE.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for word in line.split()[1:-1]
    }
    assert sources >= {"requirements.lock", "pyproject.toml", "feature_repo", "tradeloop", "services"}
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source), f"{source} is excluded by .dockerignore"
    for private in (".venv", ".git", ".tradeloop", "tests", "bench", "helm", ".github"):
        assert _ignored(private), f"{private} would be sent to the build"


def test_dockerfile_is_multistage_non_root_and_pinned() -> None:
    stages = re.findall(r"^FROM (\S+) AS (\w+)", DOCKERFILE, flags=re.M)
    assert [name for _, name in stages] == ["build", "runtime"]
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", DOCKERFILE, flags=re.M)
    assert "pip install -r requirements.lock" in DOCKERFILE
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, flags=re.M)
    assert "COPY feature_repo /app/feature_repo" in DOCKERFILE
    assert "TRADELOOP_FEATURE_REPO=/app/feature_repo" in DOCKERFILE
    assert 'ENTRYPOINT ["tradeloop"]' in DOCKERFILE


def test_feature_repo_is_found_from_a_copy_outside_the_checkout(tmp_path: Path) -> None:
    """What the image does: feature_repo/ at another path, the package installed, cwd elsewhere."""
    repo = tmp_path / "app" / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    env = {**os.environ, "TRADELOOP_FEATURE_REPO": str(repo), "TRADELOOP_HOME": str(tmp_path / "home")}
    env.pop("TRADELOOP_REDIS_URL", None)
    env.pop("TRADELOOP_REGISTRY_URL", None)
    probe = (
        "from tradeloop import feature_store as fs; from tradeloop.config import Settings; "
        "print(fs.REPO_DIR); print(sorted(o.name for o in fs._repo_objects(Settings.load(), None)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr
    found, names = result.stdout.strip().splitlines()[-2:]
    assert found == str(repo)
    assert "bar_features" in names, names
    assert "bar_window" in names, names
