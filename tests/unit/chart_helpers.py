"""The Helm chart rendered offline for the chart tests (tests/unit/test_chart*.py, the policy tests
beside them, tests/process/test_chart_tools.py and tests/containers): by Helm's own engine
(helm-python-sdk) with the defaults or an example values file, and where the rendered objects hold
their pods and containers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

from eyeops.settings import repo_root

CHART = repo_root() / "charts" / "eyeops"
KUBERNETES = "1.30"
PROD = repo_root() / "k8s" / "overlays" / "prod" / "values.yaml"
EXAMPLES = sorted((repo_root() / "k8s" / "overlays").glob("*/values.yaml"))  # the dev and prod overlays


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(str(CHART))
    try:
        out = chart.render(values or {}, name="clinic", namespace="eyeops", is_install=True)
    finally:
        chart.close()
    manifests = [text for path, text in out.items() if not path.endswith("NOTES.txt")]
    return [d for text in manifests for d in yaml.safe_load_all(text) if d]


def values_of(path: Path | None) -> dict[str, Any]:
    return {} if path is None else dict(yaml.safe_load(path.read_text()))


def pods(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, its pod template) for every Pod, Deployment, StatefulSet, Job and CronJob."""
    found = []
    for o in objects:
        if o["kind"] == "Pod":
            found.append((o, o))
        elif o["kind"] in ("Deployment", "StatefulSet", "Job"):
            found.append((o, o["spec"]["template"]))
        elif o["kind"] == "CronJob":
            found.append((o, o["spec"]["jobTemplate"]["spec"]["template"]))
    return found


def kserve_containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod-level spec, container) of every container an InferenceService or runtime runs."""
    found = []
    for o in objects:
        if o["kind"] == "ServingRuntime":
            found += [(o["metadata"]["name"], o["spec"], c) for c in o["spec"]["containers"]]
        elif o["kind"] == "InferenceService":
            for component in ("predictor", "transformer"):
                spec = o["spec"].get(component)
                if spec:
                    found += [
                        (f"{o['metadata']['name']}/{component}", spec, c) for c in spec.get("containers", [])
                    ]
    return found


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """(metadata, PodSpec) of every pod the release makes, InferenceService components included
    (KServe puts a component's labels and annotations on its pods)."""
    found = {}
    for workload, template in pods(objects):
        spec = template["spec"]
        found[workload["metadata"]["name"]] = (template["metadata"], spec)
    for o in objects:
        if o["kind"] == "InferenceService":
            for component in ("predictor", "transformer"):
                spec = o["spec"][component]
                meta = {"labels": spec.get("labels", {}), "annotations": spec.get("annotations", {})}
                found[f"{o['metadata']['name']}-{component}"] = (meta, spec)
    return found
