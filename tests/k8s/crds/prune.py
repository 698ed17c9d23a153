"""Prune an upstream CRD to the field list the chart tests check rendered objects against.

Usage (a maintenance tool, not a test): ``python tests/k8s/crds/prune.py CRD.yaml VERSION SOURCE > OUT.json``
where SOURCE names where the CRD came from (repository, tag, path); it is recorded in the output.

What is kept: every field name, type, enum, format, ``required`` list and the int-or-string and
preserve-unknown-fields markers of ``spec`` (``status`` is the operator's, never ours). What is
dropped: descriptions, and the contents of every embedded PodTemplateSpec, which is replaced by
``{"x-pod-template": true}``; the tests validate those templates against Kubernetes' own
PodTemplateSpec schema instead (kubernetes-validate), which is what the API server does too.
Objects with declared properties are closed (``additionalProperties: false``): an API server
silently prunes an unknown field, and a silently dropped field is exactly the mistake to catch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

_KEEP = {
    "type",
    "properties",
    "items",
    "additionalProperties",
    "required",
    "enum",
    "format",
    "anyOf",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "minimum",
    "maximum",
}


def _is_pod_template(node: dict[str, Any]) -> bool:
    props = node.get("properties", {})
    spec = props.get("spec", {}).get("properties", {})
    return set(props) <= {"metadata", "spec"} and "containers" in spec


def prune(node: Any) -> Any:
    """The schema ``node`` with descriptions dropped and pod templates replaced (see the module)."""
    if not isinstance(node, dict):
        return node
    if node.get("type") == "object" and _is_pod_template(node):
        return {"type": "object", "x-pod-template": True}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            out[key] = {name: prune(child) for name, child in value.items()}
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            out[key] = prune(value)
        elif key == "anyOf":
            out[key] = [prune(v) for v in value]
        else:
            out[key] = value
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def main(path: str, version: str, source: str) -> None:
    crd = yaml.safe_load(Path(path).read_text())
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = entry["schema"]["openAPIV3Schema"]
    spec = prune(schema["properties"]["spec"])
    out = {
        "source": source,
        "group": crd["spec"]["group"],
        "kind": crd["spec"]["names"]["kind"],
        "version": version,
        "schema": {
            "type": "object",
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"enum": [f"{crd['spec']['group']}/{version}"]},
                "kind": {"enum": [crd["spec"]["names"]["kind"]]},
                "metadata": {"type": "object"},
                "spec": spec,
            },
            "additionalProperties": False,
        },
    }
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
