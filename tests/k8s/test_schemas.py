"""Every built-in object the chart, the kustomize overlays and k8s/custom-resources render passes
the strict Kubernetes schemas (kubernetes-validate) of the oldest version the chart supports and
of the newest the package knows. Custom resources are checked in test_crd_fields.py."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from tests.k8s.conftest import CHART, Rendering

OLDEST = "1.29.0"  # Chart.yaml kubeVersion
VERSIONS = (OLDEST, kubernetes_validate.latest_version())
CUSTOM_GROUPS = ("serving.kserve.io/", "ray.io/", "monitoring.coreos.com/")


def test_chart_declares_the_oldest_version_checked() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={OLDEST}-0"
    assert chart["apiVersion"] == "v2"  # Helm 3 and Helm 4


@pytest.mark.parametrize("version", VERSIONS)
def test_built_in_objects_pass_kubernetes_schemas(everything: list[Rendering], version: str) -> None:
    failures = []
    seen: set[str] = set()
    for rendering in everything:
        for obj in rendering.objects:
            key = json.dumps(obj, sort_keys=True)
            if obj["apiVersion"].startswith(CUSTOM_GROUPS) or key in seen:
                continue
            seen.add(key)
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(map(str, exc.path))
                failures.append(
                    f"{rendering.name} {obj['kind']}/{obj['metadata']['name']} {where}: {exc.message}"
                )
            except kubernetes_validate.SchemaNotFoundError:
                failures.append(
                    f"{rendering.name} {obj['apiVersion']} {obj['kind']}: not in Kubernetes {version}"
                )
    assert len(seen) > 50
    assert not failures, "\n".join(failures)
