"""k8s/ is the chart's rendering for users without Helm (scripts/render_k8s.py): the committed
files are exactly what the script writes, and each kustomize overlay builds exactly the objects
``helm template`` gives for that overlay's helm-values.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import K8S, OVERLAYS, ROOT, Rendering, render_k8s


def test_k8s_folder_is_the_current_chart_rendering(helm: Path) -> None:
    files = render_k8s.generate(helm)
    stale = sorted(
        str(p.relative_to(ROOT)) for p, text in files.items() if not p.exists() or p.read_text() != text
    )
    extra = sorted(str(p.relative_to(ROOT)) for p in render_k8s.owned(K8S) - set(files))
    assert (stale, extra) == ([], []), "run `python scripts/render_k8s.py` (stale files, extra files)"


def _canonical(obj: dict[str, Any]) -> str:
    meta = {k: v for k, v in obj["metadata"].items() if k != "namespace"}
    return json.dumps({**obj, "metadata": meta}, sort_keys=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_overlay_builds_the_charts_objects(
    helm: Path, overlays: dict[str, Rendering], overlay: str
) -> None:
    values = K8S / "overlays" / overlay / "helm-values.yaml"
    chart = sorted(_canonical(render_k8s.plain(o)) for o in render_k8s.render(values, helm=helm))
    built = overlays[overlay].objects
    assert all(o["metadata"].get("namespace", render_k8s.NAMESPACE) == render_k8s.NAMESPACE for o in built)
    assert sorted(_canonical(o) for o in built) == chart


def test_overlays_differ_as_documented(overlays: dict[str, Rendering]) -> None:
    dev, prod = overlays["dev"], overlays["prod"]
    predictor = {
        name: next(d for d in r.kinds("Deployment") if d["metadata"]["name"] == "tradeloop-predictor")
        for name, r in (("dev", dev), ("prod", prod))
    }
    assert predictor["dev"]["spec"]["replicas"] == 1
    assert not dev.kinds("HorizontalPodAutoscaler")
    assert prod.one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "tradeloop-predictor"
    dev_env = {e["name"] for e in predictor["dev"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not dev_env & {"TRADELOOP_REDIS_URL", "TRADELOOP_REGISTRY_URL"}  # embedded Feast stores
    prod_env = {e["name"]: e for e in predictor["prod"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert prod_env["TRADELOOP_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "tradeloop-redis"
    for rendering in (dev, prod):
        assert not rendering.kinds("StatefulSet")  # no in-cluster Redis/PostgreSQL in either
