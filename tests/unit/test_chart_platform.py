"""What a platform sets on every pod of the chart and what keeps them running: scheduling, pull
secrets, labels and annotations, disruption budgets and autoscaling, extra env, volumes and mounts,
images pinned by digest, and a deadline on every Job."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import pytest

from tests.unit.chart_helpers import PROD, pod_specs, render, values_of


def test_no_job_of_the_chart_can_hang_for_ever() -> None:
    """Issue 30, item 9: every Job has a deadline; the materialize CronJob's runs end before the
    next is due (concurrencyPolicy Forbid would otherwise skip every later run behind a hung one)."""
    objects = render(values_of(PROD))
    jobs = [o["spec"] for o in objects if o["kind"] == "Job"]
    crons = [o["spec"] for o in objects if o["kind"] == "CronJob"]
    assert len(jobs) == 2 and len(crons) == 1  # the seed and `feast apply`; materialize
    for spec in jobs + [c["jobTemplate"]["spec"] for c in crons]:
        assert spec["activeDeadlineSeconds"] > 0
    (cron,) = crons
    minutes = int(cron["schedule"].split()[0].removeprefix("*/"))
    assert cron["concurrencyPolicy"] == "Forbid" and cron["startingDeadlineSeconds"] > 0
    assert cron["jobTemplate"]["spec"]["activeDeadlineSeconds"] < minutes * 60


def test_every_pod_takes_the_platforms_scheduling_pull_secrets_labels_and_annotations() -> None:
    """Issue 30, items 6 and 7: what production charts let a platform set on every pod, here on
    all of them, InferenceService components included; runAsUser null for OpenShift."""
    values = values_of(PROD)
    placement = {
        "nodeSelector": {"node-role.kubernetes.io/ml": ""},
        "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "clinic-critical",
    }  # fmt: skip
    values["pods"] = {**placement, "labels": {"cost-centre": "eye"}, "annotations": {"backup": "no"}}
    values["imagePullSecrets"] = [{"name": "clinic-registry"}]
    values["commonLabels"] = {"clinic": "north"}
    objects = render(values)
    found = pod_specs(objects)
    assert len(found) >= 10, sorted(found)
    for name, (meta, spec) in found.items():
        for key, value in placement.items():
            assert spec[key] == value, (name, key)
        assert spec["imagePullSecrets"] == [{"name": "clinic-registry"}], name
        assert meta["labels"]["cost-centre"] == "eye" and meta["annotations"]["backup"] == "no", name
    assert all(o["metadata"]["labels"]["clinic"] == "north" for o in objects)
    # Model pods do not restart on a chart bump: an InferenceService carries no version label.
    for o in objects:
        if o["kind"] == "InferenceService":
            assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(o["metadata"]["labels"])
    values["pods"] = {"runAsUser": None}
    for name, (_, spec) in pod_specs(render(values)).items():
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and not {"runAsUser", "runAsGroup", "fsGroup"} & set(
            context
        ), name


def test_every_replicated_workload_keeps_a_pod_through_a_drain_and_autoscaling_is_exposed() -> None:
    """Issue 30, item 6: a PodDisruptionBudget for every workload of more than one replica (the
    console, the feature servers, InferenceService components from minReplicas 2), and KServe's
    autoscaling fields where set, refused where the mode cannot honour them; unset, the measured
    defaults of the mode (issue 32, item 3), or KServe's own with "kserve"."""
    values = values_of(PROD)
    values["ocr"]["minReplicas"] = 2
    values["ocr"]["autoscaling"] = {"scaleMetric": "cpu", "scaleTarget": 60, "timeout": 30}
    objects = render(values)
    budgets = {
        o["metadata"]["name"].removeprefix("clinic-eyeops-")
        for o in objects
        if o["kind"] == "PodDisruptionBudget"
    }
    assert budgets == {"console", "feast", "monitor", "ocr-predictor", "ocr-transformer"}
    (ocr,) = [
        o["spec"] for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "ocr"
    ]
    for component in ("predictor", "transformer"):
        assert {k: ocr[component].get(k) for k in ("scaleMetric", "scaleTarget", "timeout")} == {
            "scaleMetric": "cpu", "scaleTarget": 60, "timeout": 30
        }  # fmt: skip
        assert "containerConcurrency" not in ocr[component]
    (lens,) = [
        o["spec"] for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "lens"
    ]
    # unset: the measured defaults of the mode (docs/sizing.md), not KServe's 80 % CPU
    assert {k: lens["transformer"].get(k) for k in ("scaleMetric", "scaleTarget")} == {
        "scaleMetric": "cpu", "scaleTarget": 60
    }  # fmt: skip
    values["lens"]["autoscaling"] = {"scaleMetric": "kserve"}
    (lens,) = [
        o["spec"]
        for o in render(values)
        if o["kind"] == "InferenceService" and o["metadata"]["name"] == "lens"
    ]
    assert "scaleMetric" not in lens["transformer"] and "scaleTarget" not in lens["transformer"]
    values["ocr"]["autoscaling"] = {"scaleMetric": "concurrency", "scaleTarget": 4}
    with pytest.raises(
        helm_python.HelmRenderError, match=r"scaleMetric: concurrency needs kserve\.deploymentMode Knative"
    ):
        render(values)
    values["kserve"] = {"deploymentMode": "Knative"}
    (ocr,) = [
        o["spec"]
        for o in render(values)
        if o["kind"] == "InferenceService" and o["metadata"]["name"] == "ocr"
    ]
    assert ocr["transformer"]["scaleMetric"] == "concurrency" and ocr["transformer"]["scaleTarget"] == 4
    values["ocr"]["autoscaling"] = {}
    values["lens"]["autoscaling"] = {}
    services = {o["metadata"]["name"]: o["spec"] for o in render(values) if o["kind"] == "InferenceService"}
    for name, metric, target in (("ocr", "concurrency", 8), ("lens", "rps", 100)):  # Knative's measured
        for component in ("predictor", "transformer"):
            spec = services[name][component]
            assert (spec["scaleMetric"], spec["scaleTarget"]) == (metric, target), (name, component)


def test_images_can_be_pinned_by_digest() -> None:
    digest = "sha256:" + "ab" * 32
    values = values_of(PROD)
    values["imageRegistry"] = "registry.example"
    for path in (("console",), ("monitor",), ("ocr", "triton"), ("ocr", "transformer"), ("lens", "predictor"),
                 ("lens", "transformer"), ("feast",), ("seed",)):  # fmt: skip
        node = values
        for key in path:
            node = node.setdefault(key, {})
        node["image"] = {
            **node.get("image", {}),
            "repository": f"eyeops/{path[-1]}",
            "tag": "0.1.0",
            "digest": digest,
        }
    text = json.dumps(render(values))
    images = set(re.findall(r'"image": "([^"]+)"', text))
    assert images and all(
        i.startswith("registry.example/eyeops/") and i.endswith(f":0.1.0@{digest}") for i in images
    ), images
    values["console"]["image"]["digest"] = "latest"
    with pytest.raises(helm_python.HelmValuesError, match="digest"):
        render(values)


def test_every_container_of_ours_takes_extra_env_volumes_and_mounts() -> None:
    """Issue 30, item 7: a platform adds a proxy variable, a CA bundle volume and its mount."""
    extra = {
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}],
        "extraVolumes": [{"name": "clinic-ca", "configMap": {"name": "clinic-ca"}}],
        "extraVolumeMounts": [{"name": "clinic-ca", "mountPath": "/etc/ssl/clinic", "readOnly": True}],
    }
    values = values_of(PROD)
    for path in (("console",), ("monitor",), ("ocr", "transformer"), ("ocr", "triton"),
                 ("lens", "transformer"), ("lens", "predictor")):  # fmt: skip
        node = values
        for key in path:
            node = node.setdefault(key, {})
        node.update(extra)
    objects = render(values)
    containers: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for o in objects:
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(("-console", "-monitor")):
            spec = o["spec"]["template"]["spec"]
            containers[o["metadata"]["name"]] = (spec["containers"][0], spec["volumes"])
        if o["kind"] == "ServingRuntime":
            containers[o["metadata"]["name"]] = (o["spec"]["containers"][0], o["spec"]["volumes"])
        if o["kind"] == "InferenceService":
            transformer = o["spec"]["transformer"]
            containers[f"{o['metadata']['name']}-transformer"] = (
                transformer["containers"][0],
                transformer["volumes"],
            )
    assert len(containers) == 6, sorted(containers)
    for name, (container, volumes) in containers.items():
        assert container["env"][0] == extra["extraEnv"][0], name
        assert extra["extraVolumeMounts"][0] in container["volumeMounts"], name
        assert extra["extraVolumes"][0] in volumes, name


def test_the_monitor_runs_replicas_on_postgres_and_one_writer_on_sqlite() -> None:
    """Issue 30, item 6: the loggers' sink was one `Recreate` replica. On PostgreSQL the replicas
    share the state (detectors/tests/test_replicas.py), roll one at a time and keep one through a
    drain; a SQLite file keeps one replica, replaced after the old one stops; more is refused."""
    values = values_of(PROD)
    (monitor,) = [
        o for o in render(values) if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-monitor")
    ]
    assert monitor["spec"]["replicas"] == 2
    assert monitor["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}
    }  # fmt: skip
    values["monitor"]["replicas"] = 1
    assert not [
        o for o in render(values) if o["kind"] == "PodDisruptionBudget" and "monitor" in o["metadata"]["name"]
    ]
    sqlite = render()
    (single,) = [
        o for o in sqlite if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-monitor")
    ]
    assert single["spec"]["replicas"] == 1 and single["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(helm_python.HelmRenderError, match=r"monitor\.replicas: more than one replica needs"):
        render({"monitor": {"replicas": 2}})
