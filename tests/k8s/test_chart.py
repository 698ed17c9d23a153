"""The chart itself: lint, every profile renders with Helm 4 and Helm 3, values.schema.json refuses
bad values, and the rendered objects keep the promises of DESIGN (Kubernetes) and issue 10."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.k8s.conftest import CHART, PROFILES, Rendering, objects, pod_specs, template


def _secretless(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects without generated secret values (random on every render)."""
    return [{**d, "data": "<random>"} if d["kind"] == "Secret" else d for d in docs]


def test_chart_lints_strict(any_helm: Path) -> None:
    from tests.k8s.conftest import run

    out = run([any_helm, "lint", "--strict", CHART]).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_renders_the_same_objects_with_helm3_and_helm4(
    any_helm: Path, profile: str, profiles: dict[str, Rendering]
) -> None:
    docs = objects(template(any_helm, "-f", str(CHART / "ci" / f"{profile}-values.yaml")).stdout)
    assert docs, f"{profile} rendered nothing"
    assert _secretless(docs) == _secretless(profiles[profile].objects)


REJECTED = {
    "negative replicas": (["serving.replicas=-1"], "replicas"),
    "negative autoscaling bound": (["serving.autoscaling.minReplicas=-2"], "minReplicas"),
    "unknown serving mode": (["serving.mode=knative"], "mode"),
    "plain-text token as a value": (["monitor.github.token=ghp_0123456789abcdefABCDEF"], "token"),
    "plain-text token instead of a Secret reference": (
        ["monitor.github.tokenSecret=ghp_0123456789abcdefABCDEF"],
        "tokenSecret",
    ),
    "plain-text token as the Secret's name": (
        ["monitor.github.tokenSecret.name=ghp_0123456789abcdefABCDEF"],
        "tokenSecret",
    ),
    "token in extraEnv": (["extraEnv[0].name=GITHUB_TOKEN", "extraEnv[0].value=ghp_x"], "extraEnv"),
    "training job without an image tag": (["training.runId=r1"], "tag"),
    "run id too long for KubeRay's 47-character names": (
        ["training.runId=" + "1" * 21, "image.tag=abc"],
        "runId",
    ),
    "control characters in the retrain reason": (
        ["training.runId=r", "image.tag=a", "training.reason=a\nb"],
        "reason",
    ),
    "dispatch without a token Secret": (
        ["monitor.github.dispatch=true", "monitor.github.repository=a/b"],
        "name",
    ),
    "root pods": (["podSecurityContext.runAsNonRoot=false"], "runAsNonRoot"),
    "unknown top-level key": (["replicas=3"], "replicas"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_values_schema_rejects_bad_values(any_helm: Path, case: str) -> None:
    sets, field = REJECTED[case]
    args = [a for s in sets for a in ("--set", s)]
    result = template(any_helm, *args, check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert "schema" in result.stderr, result.stderr
    assert field in result.stderr, result.stderr


def test_values_schema_accepts_the_defaults_and_every_profile() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)
    for profile in PROFILES:
        merged = _merge(defaults, yaml.safe_load((CHART / "ci" / f"{profile}-values.yaml").read_text()) or {})
        jsonschema.Draft7Validator(schema).validate(merged)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merge(base.get(k), over[k]) if k in over else base[k] for k in {**base, **over}}
    return over


def test_predictor_kind_follows_serving_mode(profiles: dict[str, Rendering]) -> None:
    assert (
        profiles["inferenceservice"].one("InferenceService")["metadata"]["annotations"][
            "serving.kserve.io/deploymentMode"
        ]
        == "Standard"
    )
    assert not profiles["inferenceservice"].kinds("HorizontalPodAutoscaler")
    deployment = profiles["deployment"]
    assert {d["metadata"]["name"] for d in deployment.kinds("Deployment")} >= {"tl-tradeloop-predictor"}
    hpa = deployment.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "tl-tradeloop-predictor"
    predictor = next(
        d for d in deployment.kinds("Deployment") if d["metadata"]["name"].endswith("-predictor")
    )
    assert "replicas" not in predictor["spec"], "an HPA-managed Deployment must not pin replicas"
    ray = profiles["rayservice"].one("RayService")
    assert ray["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    serve = yaml.safe_load(ray["spec"]["serveConfigV2"])
    scaling = serve["applications"][0]["deployments"][0]["autoscaling_config"]
    assert scaling["min_replicas"] == 1
    assert scaling["max_replicas"] == 6


def test_training_rayjob_is_rendered_only_on_demand_with_run_id_image_and_ttl(
    profiles: dict[str, Rendering],
) -> None:
    assert not profiles["default"].kinds("RayJob")
    job = profiles["gpu-training"].one("RayJob")
    spec = job["spec"]
    assert job["metadata"]["name"] == "tl-tradeloop-retrain-gh-1234567890-1"
    assert len(job["metadata"]["name"]) <= 47  # KubeRay's MaxRayJobNameLength
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    images = {c["image"] for _, pod in pod_specs(job) for c in pod["containers"]}
    assert images == {"ghcr.io/tradeloop/tradeloop:0123abc-cuda"}
    groups = {g["groupName"]: g for g in spec["rayClusterSpec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1"


def test_training_job_renders_alone_for_the_retrain_workflow(helm: Path) -> None:
    """The retrain workflow's command line: --show-only, a run id and the commit's image tag."""
    out = template(
        helm,
        "--show-only",
        "templates/training-rayjob.yaml",
        "--set",
        "training.runId=gh-42-1",
        "--set",
        "image.tag=0123abc",
    ).stdout
    (job,) = objects(out)
    assert job["kind"] == "RayJob"
    assert job["metadata"]["name"] == "tl-tradeloop-retrain-gh-42-1"


FAKE_TRADELOOP = """#!/usr/bin/env python3
import json, pathlib, sys
args = sys.argv[1:]
summary = pathlib.Path(args[args.index("--summary") + 1])
summary.parent.mkdir(parents=True, exist_ok=True)
summary.write_text("## retrain\\n" + json.dumps(args) + "\\n")
sys.exit(int(pathlib.Path(sys.argv[0]).with_name("rc").read_text()))
"""


@pytest.mark.parametrize(("rc", "job_rc"), [(0, 0), (10, 0), (3, 3)])
def test_rayjob_entrypoint_survives_kuberays_two_shells_and_prints_the_summary(
    helm: Path, tmp_path: Path, rc: int, job_rc: int
) -> None:
    """KubeRay pastes the entrypoint into the submitter's bash script; ``ray job submit`` shlex-joins
    its argv and Ray runs that string in a shell. A reason full of quotes must arrive intact, the
    summary must be printed between the workflow's markers, and exit 10 (champion kept) is success."""
    reason = 'drift-detected: it\'s "real"; $(touch pwned) `x` & done'
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "training": {"runId": "t1", "reason": reason},
                "image": {"tag": "x"},
                "home": {"mountPath": str(tmp_path / "home")},
            }
        )
    )
    (job,) = objects(
        template(helm, "--show-only", "templates/training-rayjob.yaml", "-f", str(values)).stdout
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tradeloop").write_text(FAKE_TRADELOOP)
    (bin_dir / "tradeloop").chmod(0o755)
    (bin_dir / "rc").write_text(str(rc))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    join_argv = "import shlex, sys; print(shlex.join(sys.argv[1:]))"  # what `ray job submit` does
    submit = f"{sys.executable} -c '{join_argv}' {job['spec']['entrypoint']}"
    joined = subprocess.run(
        ["bash", "-c", submit], capture_output=True, text=True, check=True, env=env
    ).stdout
    result = subprocess.run(
        ["sh", "-c", joined.strip()], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == job_rc, result.stderr
    assert not (tmp_path / "pwned").exists()
    out = result.stdout
    begin, end = out.index("<!-- tradeloop-summary:begin -->"), out.index("<!-- tradeloop-summary:end -->")
    args = json.loads(out[begin:end].splitlines()[-1])
    assert args[:3] == ["retrain", "--reason", reason]
    assert args[args.index("--preset") + 1] == "balanced"


def test_monitor_token_comes_from_a_secret_reference(profiles: dict[str, Rendering]) -> None:
    monitor = next(
        d for d in profiles["deployment"].kinds("Deployment") if d["metadata"]["name"].endswith("-monitor")
    )
    env = {e["name"]: e for e in monitor["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GITHUB_TOKEN"] == {
        "name": "GITHUB_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "tradeloop-github", "key": "token"}},
    }
    assert "--dispatch" in monitor["spec"]["template"]["spec"]["containers"][0]["args"]
    names = [c["metadata"]["name"] for c in profiles["default"].kinds("CronJob")]
    assert "tl-tradeloop-monitor" in names


def test_feast_apply_is_a_hook_and_materialize_a_cronjob(profiles: dict[str, Rendering]) -> None:
    job = profiles["default"].one("Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["features", "apply"]
    cron = next(c for c in profiles["default"].kinds("CronJob") if "materialize" in c["metadata"]["name"])
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["features", "materialize", "--incremental"]


def test_helm_test_hook_checks_readiness_then_predicts(profiles: dict[str, Rendering]) -> None:
    for name in ("default", "inferenceservice", "rayservice"):
        pod = profiles[name].one("Pod")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        url = pod["spec"]["initContainers"][0]["args"][1]
        assert pod["spec"]["containers"][0]["args"][:2] == ["--json", "predict"]
        assert url in pod["spec"]["containers"][0]["args"]
    assert (
        profiles["inferenceservice"].one("Pod")["spec"]["containers"][0]["args"][-1]
        == "http://tl-tradeloop-predictor"
    )


def test_stores_are_in_chart_or_external_by_values(profiles: dict[str, Rendering]) -> None:
    def env(rendering: Rendering) -> dict[str, Any]:
        predictor = next(
            d for d in rendering.kinds("Deployment") if d["metadata"]["name"].endswith("-predictor")
        )
        return {e["name"]: e for e in predictor["spec"]["template"]["spec"]["containers"][0]["env"]}

    inside = env(profiles["default"])
    assert inside["TRADELOOP_REDIS_URL"]["value"] == "redis://tl-tradeloop-redis:6379/0"
    assert inside["TRADELOOP_REGISTRY_URL"]["value"].startswith("postgresql+psycopg://tradeloop:$(")
    assert inside["MLFLOW_TRACKING_URI"]["value"] == "http://tl-tradeloop-mlflow:5000"
    assert inside["TRADELOOP_FEATURE_REPO"]["value"] == "/app/feature_repo"
    outside = env(profiles["external-stores"])
    assert outside["TRADELOOP_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "tradeloop-redis"
    assert (
        outside["TRADELOOP_REGISTRY_URL"]["valueFrom"]["secretKeyRef"]["name"] == "tradeloop-feast-registry"
    )
    external = profiles["external-stores"]
    assert not [s for s in external.kinds("StatefulSet")], "no in-chart Redis/PostgreSQL with external stores"
    mlflow = next(d for d in external.kinds("Deployment") if d["metadata"]["name"].endswith("-mlflow"))
    container = mlflow["spec"]["template"]["spec"]["containers"][0]
    assert "s3://tradeloop-artifacts/mlflow" in container["args"]
    assert container["envFrom"] == [{"secretRef": {"name": "tradeloop-s3"}}]


def test_predictor_has_no_kubernetes_api_access(everything: list[Rendering]) -> None:
    for rendering in everything:
        bound = {
            s["name"]
            for rb in rendering.kinds("RoleBinding") + rendering.kinds("ClusterRoleBinding")
            for s in rb.get("subjects", [])
        }
        assert not [b for b in bound if b.endswith("-predictor")], rendering.name
        for obj in rendering.objects:
            for where, pod in pod_specs(obj):
                if pod.get("serviceAccountName", "").endswith("-predictor"):
                    assert pod.get("automountServiceAccountToken") is False, f"{rendering.name} {where}"
        assert not rendering.kinds("ClusterRole"), f"{rendering.name}: the chart needs no cluster-wide rights"


def test_every_component_has_its_own_service_account(profiles: dict[str, Rendering]) -> None:
    rendering = profiles["default"]
    accounts = {sa["metadata"]["name"] for sa in rendering.kinds("ServiceAccount")}
    used = {pod.get("serviceAccountName") for obj in rendering.objects for _, pod in pod_specs(obj)}
    used.discard(None)  # the helm test pod uses no account and mounts no token
    assert used <= accounts
    assert len(used) >= 6, used  # predictor, monitor, mlflow, feast, redis, postgresql


def test_network_policies_deny_by_default_and_cover_every_pod(profiles: dict[str, Rendering]) -> None:
    for name, rendering in profiles.items():
        policies = rendering.kinds("NetworkPolicy")
        deny = [p for p in policies if p["metadata"]["name"].endswith("-default-deny")]
        assert deny, name
        assert deny[0]["spec"]["policyTypes"] == ["Ingress", "Egress"], name
        assert "ingress" not in deny[0]["spec"]
        assert "egress" not in deny[0]["spec"]
        selector = deny[0]["spec"]["podSelector"]["matchLabels"]
        for obj in rendering.objects:
            labels = _pod_labels(obj)
            if labels is not None:
                assert selector.items() <= labels.items(), f"{name}: {obj['kind']}/{obj['metadata']['name']}"


def _pod_labels(obj: dict[str, Any]) -> dict[str, str] | None:
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "Pod":
        return obj["metadata"]["labels"]
    if kind in {"Deployment", "StatefulSet", "Job"}:
        return spec["template"]["metadata"]["labels"]
    if kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    if kind == "InferenceService":
        return spec["predictor"]["labels"]
    return None


def test_predictor_has_a_disruption_budget(profiles: dict[str, Rendering]) -> None:
    for name in ("default", "inferenceservice", "deployment", "rayservice"):
        pdb = profiles[name].one("PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "predictor"


def test_monitoring_objects_and_dashboard(profiles: dict[str, Rendering]) -> None:
    rendering = profiles["deployment"]
    monitors = {m["metadata"]["name"] for m in rendering.kinds("ServiceMonitor")}
    assert monitors == {"tl-tradeloop-predictor", "tl-tradeloop-monitor"}
    alerts = {r["alert"] for g in rendering.one("PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "TradeloopHighErrorRate",
        "TradeloopHighLatencyP99",
        "TradeloopStaleFeatures",
        "TradeloopReloadFailures",
        "TradeloopFeatureDrift",
    }
    dashboard = next(c for c in rendering.kinds("ConfigMap") if c["metadata"]["name"].endswith("-dashboard"))
    panels = json.loads(dashboard["data"]["tradeloop.json"])["panels"]
    assert len(panels) >= 6
    # Every Service a ServiceMonitor selects exists with the named port.
    for monitor in rendering.kinds("ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        ports = {e["port"] for e in monitor["spec"]["endpoints"]}
        services = [
            s for s in rendering.kinds("Service") if wanted.items() <= s["metadata"]["labels"].items()
        ]
        assert services
        assert all(ports <= {p["name"] for p in s["spec"]["ports"]} for s in services)


def test_notes_name_the_next_commands(helm: Path) -> None:
    from tests.k8s.conftest import run

    for mode, expected in {
        "deployment": "kubectl patch hpa",
        "inferenceservice": "kubectl patch inferenceservice",
    }.items():
        out = run([helm, "install", "tl", CHART, "--dry-run=client", "--set", f"serving.mode={mode}"]).stdout
        notes = out[out.index("NOTES:") :]
        for text in ("curl", expected, "Grafana", "helm test"):
            assert text in notes, notes
    out = run(
        [
            helm,
            "install",
            "tl",
            CHART,
            "--dry-run=client",
            "--set",
            "serving.mode=deployment",
            "--set",
            "serving.autoscaling.enabled=false",
        ]
    ).stdout
    assert "kubectl scale deployment tl-tradeloop-predictor" in out
