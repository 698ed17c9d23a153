"""Custom resources against the fields and types of the CRD versions docs/kubernetes.md names.

An API server silently drops a field its CRD does not know, so a misspelt ``shutdownAfterJobFinish``
would install fine and never act; these checks catch that offline. Sources of the field lists:

- InferenceService (serving.kserve.io/v1beta1): the model classes of the installed ``kserve``
  package (``kserve.models``, generated from the CRD's Go types; kserve 0.21 in requirements.lock)
  and ``kubernetes.client.models`` for the core types they embed. Enums the classes do not carry
  (``scaleMetric``, the deployment-mode annotation) come from kserve's
  ``pkg/apis/serving/v1beta1/component.go`` and ``pkg/constants/constants.go`` at v0.20.0.
- RayJob, RayService (ray.io/v1), ServiceMonitor, PrometheusRule (monitoring.coreos.com/v1): the
  upstream CRD YAML of KubeRay v1.3.0 and v1.7.0 and of prometheus-operator v0.70.0 and v0.93.0,
  pruned by ``crds/prune.py`` into ``crds/*.json`` (each file records its source). Embedded pod
  templates are checked against Kubernetes' own PodTemplateSpec schema (kubernetes-validate).
- RayService ``serveConfigV2``: Ray Serve's ``ServeDeploySchema`` from the installed ``ray``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import kubernetes.client.models as k8s_models
import kubernetes_validate
import pytest
import yaml

from tests.k8s.conftest import Rendering

CRDS = Path(__file__).parent / "crds"
KUBE_VERSION = "1.33.0"
KSERVE_SCALE_METRICS = {"cpu", "memory", "concurrency", "rps"}  # kserve v0.20.0 component.go
KSERVE_STANDARD_SCALE_METRICS = {"cpu", "memory"}  # an HPA scales Standard mode; the rest need Knative/KEDA
KSERVE_DEPLOYMENT_MODES = {"Standard", "RawDeployment"}  # RawDeployment: the name before 0.16
KUBERAY_MAX_NAME = 47  # MaxRayJobNameLength / MaxRayServiceNameLength, KubeRay v1.7.0 utils/constant.go


def _schemas() -> dict[tuple[str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted(CRDS.glob("*.json")):
        crd = json.loads(path.read_text())
        found.setdefault((f"{crd['group']}/{crd['version']}", crd["kind"]), []).append(crd)
    return found


SCHEMAS = _schemas()


def _pod_template(validator: Any, marked: bool, instance: Any, schema: dict[str, Any]) -> Any:
    """jsonschema keyword ``x-pod-template``: the instance is a core/v1 PodTemplateSpec."""
    if not marked:
        return
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": instance}
    try:
        kubernetes_validate.validate(wrapped, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        yield jsonschema.ValidationError(f"pod template: {exc.message} at {list(exc.path)}")


Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-pod-template": _pod_template})


def _custom(everything: list[Rendering], api_version: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{r.name} {o['metadata']['name']}", o)
        for r in everything
        for o in r.objects
        if o["apiVersion"] == api_version and o["kind"] == kind
    ]


@pytest.mark.parametrize("kind", sorted(SCHEMAS), ids=lambda k: f"{k[1]}")
def test_custom_resources_use_only_fields_of_the_named_crd_versions(
    everything: list[Rendering], kind: tuple[str, str]
) -> None:
    found = _custom(everything, *kind)
    assert found, f"no {kind[1]} rendered anywhere"
    for crd in SCHEMAS[kind]:
        validator = Validator(crd["schema"])
        for where, obj in found:
            errors = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
            ]
            assert not errors, f"{where} against {crd['source']}:\n" + "\n".join(errors)


def test_every_custom_resource_kind_has_a_field_list(everything: list[Rendering]) -> None:
    built_in_groups = {"", "apps", "batch", "policy", "autoscaling"}
    kinds = {(o["apiVersion"], o["kind"]) for r in everything for o in r.objects}
    custom = {
        k
        for k in kinds
        if (group := k[0].rpartition("/")[0]) not in built_in_groups and not group.endswith(".k8s.io")
    }
    assert custom == set(SCHEMAS) | {("serving.kserve.io/v1beta1", "InferenceService")}


def test_kuberay_names_fit_the_operators_limit(everything: list[Rendering]) -> None:
    for kind in ("RayJob", "RayService"):
        for where, obj in _custom(everything, "ray.io/v1", kind):
            assert len(obj["metadata"]["name"]) <= KUBERAY_MAX_NAME, where


def test_rayservice_serve_config_is_a_valid_ray_serve_config(everything: list[Rendering]) -> None:
    from ray.serve.schema import ServeDeploySchema

    for where, obj in _custom(everything, "ray.io/v1", "RayService"):
        config = yaml.safe_load(obj["spec"]["serveConfigV2"])
        ServeDeploySchema.model_validate(config)
        ports = {
            p["containerPort"]
            for p in obj["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0][
                "ports"
            ]
        }
        assert {config["http_options"]["port"], config["grpc_options"]["port"]} <= ports, where
        targets = {p["targetPort"] for p in obj["spec"]["serveService"]["spec"]["ports"]}
        assert targets == {config["http_options"]["port"], config["grpc_options"]["port"]}, where


def test_rayjob_runtime_env_is_yaml_env_vars(everything: list[Rendering]) -> None:
    for where, obj in _custom(everything, "ray.io/v1", "RayJob"):
        env = yaml.safe_load(obj["spec"]["runtimeEnvYAML"])
        assert set(env) == {"env_vars"}, where
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in env["env_vars"].items()), where


# -- InferenceService: the kserve package's model classes -------------------------------------------
# kserve's package registers the v2 inference protobufs on import, and so does tritonclient.grpc,
# which the serving tests import: one process cannot hold both ("duplicate symbol"). So the kserve
# model classes' field tables are read in a subprocess and used here as plain data.
_DUMP = """
import inspect, json, kserve.models as m
print(json.dumps({n: {"attribute_map": c.attribute_map, "openapi_types": c.openapi_types}
                  for n, c in inspect.getmembers(m, inspect.isclass) if hasattr(c, "attribute_map")}))
"""


@cache
def _kserve_models() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _DUMP], capture_output=True, text=True, check=True, timeout=120
    )
    return {name: SimpleNamespace(**tables) for name, tables in json.loads(done.stdout).items()}


@cache
def _model(name: str) -> Any:
    kserve_models = _kserve_models()
    if name in kserve_models:
        return kserve_models[name]
    if hasattr(k8s_models, name):
        return getattr(k8s_models, name)
    raise LookupError(name)


def _check(value: Any, type_name: str, path: str) -> list[str]:
    """Errors of ``value`` against an OpenAPI model type string (``list[V1Container]`` …)."""
    scalar = {
        "str": str,
        "bool": bool,
        "int": int,
        "float": (int, float),
        "datetime": str,
        "date": str,
        "bytes": str,
    }
    if type_name == "object":
        return []
    if type_name in scalar:
        ok = isinstance(value, scalar[type_name]) and not (
            type_name in {"int", "float"} and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: {value!r} is not {type_name}"]
    if type_name == "ResourceQuantity":
        return [] if isinstance(value, str | int | float) else [f"{path}: {value!r} is not a quantity"]
    if match := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [e for i, item in enumerate(value) for e in _check(item, match.group(1), f"{path}[{i}]")]
    if match := re.fullmatch(r"dict\(\w+, (.+)\)|Dict\[\w+, (.+)\]", type_name):
        if not isinstance(value, dict):
            return [f"{path}: not a mapping"]
        inner = match.group(1) or match.group(2)
        return [e for k, item in value.items() for e in _check(item, inner, f"{path}.{k}")]
    model = _model(type_name)
    if not isinstance(value, dict):
        return [f"{path}: not an object ({type_name})"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: no such field in {type_name}")
        else:
            errors += _check(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


def test_inferenceservice_fields_and_types_match_kserve(everything: list[Rendering]) -> None:
    found = _custom(everything, "serving.kserve.io/v1beta1", "InferenceService")
    assert found
    for where, obj in found:
        assert _check(obj, "V1beta1InferenceService", "InferenceService") == [], where
        predictor, annotations = obj["spec"]["predictor"], obj["metadata"]["annotations"]
        assert annotations["serving.kserve.io/deploymentMode"] in KSERVE_DEPLOYMENT_MODES, where
        assert predictor["minReplicas"] <= predictor["maxReplicas"], where
        if annotations["serving.kserve.io/autoscalerClass"] == "hpa":
            for field in ("scaleMetric", "scaleTarget"):
                assert field in predictor, f"{where}: {field} missing"
            assert predictor["scaleMetric"] in KSERVE_SCALE_METRICS & KSERVE_STANDARD_SCALE_METRICS, where
        else:
            assert annotations["serving.kserve.io/autoscalerClass"] == "none", where
            assert predictor["minReplicas"] == predictor["maxReplicas"], where
        assert [c["name"] for c in predictor["containers"]] == ["kserve-container"], where


def test_inferenceservice_pod_fields_pass_the_core_pod_schema(everything: list[Rendering]) -> None:
    extension = set(_model("V1beta1ComponentExtensionSpec").attribute_map.values())
    for where, obj in _custom(everything, "serving.kserve.io/v1beta1", "InferenceService"):
        predictor = obj["spec"]["predictor"]
        pod = {k: v for k, v in predictor.items() if k not in extension}
        wrapped = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "t"},
            "template": {"metadata": {"labels": predictor["labels"]}, "spec": pod},
        }
        kubernetes_validate.validate(wrapped, KUBE_VERSION, strict=True), where
