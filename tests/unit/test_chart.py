"""The Helm chart, verified without a cluster: rendered by Helm's own engine (helm-python-sdk) with
the default and every example values file, linted, core objects validated by kubernetes-validate
(strict), the restricted security settings on every pod, a NetworkPolicy over every workload, the
values schema refusing a misspelled key, a missing Secret named at template time, and the monitor's
args accepted by the real argument parser of the entrypoint they call."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from eyeops.settings import repo_root

pytestmark = pytest.mark.unit

CHART = repo_root() / "charts" / "eyeops"
KUBERNETES = "1.30"
EXAMPLES = sorted((CHART / "ci").glob("values-*.yaml"))


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(str(CHART))
    try:
        out = chart.render(values or {}, name="clinic", namespace="eyeops", is_install=True)
    finally:
        chart.close()
    return [d for text in out.values() for d in yaml.safe_load_all(text) if d]


def values_of(path: Path | None) -> dict[str, Any]:
    return {} if path is None else dict(yaml.safe_load(path.read_text()))


@pytest.fixture(params=[None, *EXAMPLES], ids=["defaults", *(p.stem for p in EXAMPLES)])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(values_of(request.param))


def pods(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, its pod template) for every Deployment, StatefulSet, Job and CronJob."""
    found = []
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            found.append((o, o["spec"]["template"]))
        elif o["kind"] == "CronJob":
            found.append((o, o["spec"]["jobTemplate"]["spec"]["template"]))
    return found


def test_chart_lints_without_errors() -> None:
    for values in [None, *EXAMPLES]:
        report = helm_python.lint(str(CHART), values_of(values), strict=True, kube_version=f"v{KUBERNETES}.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


def test_core_objects_validate_strictly(objects: list[dict[str, Any]]) -> None:
    core = [o for o in objects if not o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {o["kind"] for o in core} >= {"Deployment", "Service", "NetworkPolicy"}
    for o in core:
        kubernetes_validate.validate(o, KUBERNETES, strict=True)


def test_every_pod_runs_restricted(objects: list[dict[str, Any]]) -> None:
    assert pods(objects)
    for workload, template in pods(objects):
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False, workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert "/" in container["image"] or ":" in container["image"]


def test_every_workload_is_covered_by_a_network_policy(objects: list[dict[str, Any]]) -> None:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for workload, template in pods(objects):
        labels = template["metadata"]["labels"]
        covering = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) >= 2, workload["metadata"]["name"]  # the default deny and its own allows
        assert any(p["spec"].get("ingress") for p in covering)


def test_the_shipped_rules_are_the_tested_rules() -> None:
    objects = render({"alerting": {"prometheusRule": True}})
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    tested = yaml.safe_load((CHART / "files" / "alerts" / "rules.yaml").read_text())
    assert rule["spec"] == tested
    secret = next(
        o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("alertmanager")
    )
    assert yaml.safe_load(secret["stringData"]["alertmanager.yaml"])["route"]["receiver"] == "slack-ml"
    # auto: without monitoring.coreos.com/v1 on the cluster (offline rendering has none), no CRs.
    assert not [o for o in render() if o["apiVersion"].startswith("monitoring.coreos.com/")]


def test_values_schema_refuses_a_misspelled_key() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'monitr' not allowed"):
        render({"monitr": {"enabled": True}})
    with pytest.raises(helm_python.HelmValuesError, match="kind"):
        render({"monitor": {"state": {"kind": "mysql"}}})


def test_a_missing_secret_is_named_at_template_time() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"monitor\.state\.postgresSecret\.name"):
        render({"monitor": {"state": {"kind": "postgres"}}})
    with pytest.raises(helm_python.HelmRenderError, match=r"monitor\.detectors\.claimName"):
        render({"monitor": {"detectors": {"claimName": ""}}})


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=["defaults", *(p.stem for p in EXAMPLES)])
def test_monitor_args_are_accepted_by_the_entrypoint_parser(values: Path | None) -> None:
    deployment = next(o for o in render(values_of(values)) if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "eyeops_detectors"]
    # Kubernetes expands $(VAR) from the container's env before the process sees its args.
    args = [a.replace("$(EYEOPS_MONITOR_STATE)", "postgresql://monitor@db/eyeops") for a in container["args"]]
    python = repo_root() / ".venv-detectors" / "bin" / "python"
    check = (
        "import json, sys; from eyeops_detectors.__main__ import build_parser;"
        " a = build_parser().parse_args(json.loads(sys.argv[1]));"
        " print(json.dumps({'command': a.command, 'port': a.port, 'service': a.service}))"
    )
    done = subprocess.run(
        [str(python), "-c", check, json.dumps(args)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["command"] == "serve" and parsed["port"] == 8080
    assert sorted(parsed["service"]) == ["lens=lens", "ocr=ocr"]


def test_namespace_enforces_restricted_pod_security() -> None:
    namespace = yaml.safe_load((repo_root() / "k8s" / "base" / "namespace.yaml").read_text())
    kubernetes_validate.validate(namespace, KUBERNETES, strict=True)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    kustomization = yaml.safe_load((repo_root() / "k8s" / "base" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["namespace.yaml"]
