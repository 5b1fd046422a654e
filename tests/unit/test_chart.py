"""The Helm chart, verified without a cluster: rendered by Helm's own engine (helm-python-sdk) with
the default and every example values file, linted, core objects validated by kubernetes-validate
(strict), the restricted security settings on every pod, a NetworkPolicy over every workload, the
values schema refusing a misspelled key, a missing Secret named at template time, and the alerting
as tested.

The chart's other tests, by subject: test_chart_kserve.py (the InferenceServices), test_chart_credentials.py,
test_chart_feast.py, test_chart_models.py (the seed and upgrades), test_chart_platform.py (what a
platform sets on every pod); tests/process/test_chart_tools.py runs promtool and the monitor's
entrypoint parser on what the chart renders. PROD, render and values_of import from here as before
(tests/unit/chart_helpers.py)."""

from __future__ import annotations

from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from eyeops.settings import repo_root
from tests.unit.chart_helpers import CHART, EXAMPLES, KUBERNETES, PROD, pods, render, values_of


@pytest.fixture(params=[None, *EXAMPLES], ids=["defaults", *(p.parent.name for p in EXAMPLES)])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(values_of(request.param))


def test_chart_lints_without_errors() -> None:
    for values in [None, *EXAMPLES]:
        report = helm_python.lint(str(CHART), values_of(values), strict=True, kube_version=f"v{KUBERNETES}.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


def test_core_objects_validate_strictly(objects: list[dict[str, Any]]) -> None:
    # Custom resources are checked elsewhere: KServe's against its SDK, the PrometheusRule by promtool.
    core = [
        o for o in objects if not o["apiVersion"].startswith(("monitoring.coreos.com/", "serving.kserve.io/"))
    ]
    assert {o["kind"] for o in core} >= {"Deployment", "Service", "NetworkPolicy"}
    for o in core:
        kubernetes_validate.validate(o, KUBERNETES, strict=True)


def test_every_pod_runs_restricted(objects: list[dict[str, Any]]) -> None:
    assert pods(objects)
    for workload, template in pods(objects):
        spec = template["spec"]
        # Only the Feast server mounts a token: its own, to check its callers' (feast.server.auth).
        needs_token = spec.get("serviceAccountName", "").endswith("-feast")
        assert spec["automountServiceAccountToken"] is needs_token, workload["metadata"]["name"]
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
        serves = any(c.get("ports") for c in template["spec"]["containers"])
        assert not serves or any(p["spec"].get("ingress") for p in covering), workload["metadata"]["name"]


def test_the_shipped_rules_are_the_tested_rules() -> None:
    objects = render()
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    tested = yaml.safe_load((CHART / "files" / "alerts" / "rules.yaml").read_text())
    # the tested file, each alert labelled with the release's namespace (what an AlertmanagerConfig
    # routes on), then one rendered group: absent metrics of each target the chart scrapes
    rendered = rule["spec"]["groups"]
    for group in rendered:
        for r in group["rules"]:
            if "alert" in r:
                assert r["labels"].pop("namespace") == "eyeops", r["alert"]
    assert rendered[:-1] == tested["groups"]
    assert rendered[-1]["name"] == "eyeops-absent"
    assert not any(o["kind"] == "Secret" and o["metadata"]["name"].endswith("alertmanager") for o in objects)
    objects = render({"alerting": {"alertmanagerConfigSecret": True}})
    secret = next(
        o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("alertmanager")
    )
    assert yaml.safe_load(secret["stringData"]["alertmanager.yaml"])["route"]["receiver"] == "slack-ml"
    # Rendered by default, so helm template, kustomize and GitOps keep the alerts; false drops it,
    # and auto without monitoring.coreos.com/v1 on the cluster (offline rendering has none) too.
    assert [o["kind"] for o in render() if o["apiVersion"].startswith("monitoring.coreos.com/")] == [
        "PrometheusRule",
        "ServiceMonitor",
    ]
    for off in (False, "auto"):
        rendered = render({"alerting": {"prometheusRule": off, "serviceMonitor": off}})
        assert not [o for o in rendered if o["apiVersion"].startswith("monitoring.coreos.com/")]


def test_the_stores_addresses_are_required_not_every_private_range() -> None:
    """Issue 28, item 9: egress to PostgreSQL and Redis went to 10/8, 172.16/12 and 192.168/16 by
    default, so a compromised pod reached any database of the network."""
    with pytest.raises(helm_python.HelmRenderError, match=r"networkPolicy\.databaseCIDRs"):
        render({"monitor": {"state": {"kind": "postgres", "postgresSecret": {"name": "db"}}}})
    rendered = render(
        {
            "networkPolicy": {"databaseCIDRs": ["10.20.0.0/16"]},
            "monitor": {"state": {"kind": "postgres", "postgresSecret": {"name": "db"}}},
        }
    )
    cidrs = {
        block["ipBlock"]["cidr"]
        for o in rendered
        if o["kind"] == "NetworkPolicy"
        for rule in o["spec"].get("egress", [])
        for block in rule.get("to", [])
        if "ipBlock" in block
    }
    assert cidrs == {"10.20.0.0/16"}


def test_values_schema_refuses_a_misspelled_key() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'monitr' not allowed"):
        render({"monitr": {"enabled": True}})
    with pytest.raises(helm_python.HelmValuesError, match="kind"):
        render({"monitor": {"state": {"kind": "mysql"}}})


def test_a_missing_secret_is_named_at_template_time() -> None:
    stores = {"networkPolicy": {"databaseCIDRs": ["10.20.0.0/16"]}}
    with pytest.raises(helm_python.HelmRenderError, match=r"monitor\.state\.postgresSecret\.name"):
        render({"monitor": {"state": {"kind": "postgres"}}, **stores})
    with pytest.raises(helm_python.HelmRenderError, match=r"monitor\.detectors\.claimName"):
        render({"monitor": {"detectors": {"claimName": ""}}})


def test_namespace_enforces_restricted_pod_security() -> None:
    namespace = yaml.safe_load((repo_root() / "k8s" / "base" / "namespace.yaml").read_text())
    kubernetes_validate.validate(namespace, KUBERNETES, strict=True)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    kustomization = yaml.safe_load((repo_root() / "k8s" / "base" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["namespace.yaml"]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_render_the_chart_with_their_values(overlay: str) -> None:
    folder = repo_root() / "k8s" / "overlays" / overlay
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"]
    chart_home = (folder / kustomization["helmGlobals"]["chartHome"]).resolve()
    (chart,) = kustomization["helmCharts"]
    assert chart_home / chart["name"] == CHART.resolve() and (folder / chart["valuesFile"]).is_file()
    assert any(o["kind"] == "Deployment" for o in render(values_of(folder / chart["valuesFile"])))


def test_helm_test_checks_every_endpoint_and_notes_render() -> None:
    objects = render(values_of(PROD))
    pod = next(o for o in objects if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "eyeops.readiness"]
    assert [u.split("/")[2].split(".")[0] for u in container["args"]] == [
        "clinic-eyeops-monitor", "clinic-eyeops-feast", "ocr-transformer", "lens-transformer"
    ]  # fmt: skip
    chart = helm_python.Chart.load(str(CHART))
    try:
        notes = chart.render(values_of(PROD), name="clinic", namespace="eyeops")
    finally:
        chart.close()
    text = notes["eyeops/templates/NOTES.txt"]
    assert "helm test clinic -n eyeops" in text and "pvc://eyeops-models/registry/lens/seed" in text


def test_chart_readme_is_generated_from_the_values_comments(capsys: pytest.CaptureFixture[str]) -> None:
    from eyeops.chartdocs import documented_values
    from eyeops.cli import main

    assert main(["chart", "docs", "--check"]) == 0, capsys.readouterr().out
    keys = [k for k, _ in documented_values((CHART / "values.yaml").read_text())]
    assert "monitor.state" in keys and "ocr.storageUri" in keys and "networkPolicy.enabled" in keys


def test_an_alertmanager_config_routes_as_the_tested_configuration_does() -> None:
    """Issue 30, item 2: kube-prometheus-stack's Alertmanager takes an AlertmanagerConfig, not a
    whole configuration with example addresses; it has the routes, receivers and inhibition that
    amtool tests in files/alerts/alertmanager.yaml, with the webhook and password from Secrets."""
    values = values_of(PROD)
    values["alerting"] = {
        "alertmanagerConfig": {
            "enabled": True,
            "slack": {"webhookSecret": {"name": "clinic-slack"}},
            "email": {
                "to": "oncall@example.org",
                "from": "eyeops@example.org",
                "smarthost": "smtp.example.org:587",
            },
        }
    }
    (config,) = [o["spec"] for o in render(values) if o["kind"] == "AlertmanagerConfig"]
    tested = yaml.safe_load((CHART / "files" / "alerts" / "alertmanager.yaml").read_text())

    def matchers(ms: list[Any]) -> list[str]:
        return [m if isinstance(m, str) else f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in ms]

    route, want = config["route"], tested["route"]
    assert route["receiver"] == want["receiver"] and route["groupBy"] == want["group_by"]
    assert [(matchers(r["matchers"]), r["receiver"]) for r in route["routes"]] == [
        (r["matchers"], r["receiver"]) for r in want["routes"]
    ]
    receivers = {r["name"]: r for r in config["receivers"]}
    for r in tested["receivers"]:
        mine = receivers.pop(r["name"])
        for slack, theirs in zip(mine["slackConfigs"], r["slack_configs"], strict=True):
            assert slack["apiURL"] == {"name": "clinic-slack", "key": "slack-webhook-url"}
            assert (slack["channel"], slack["title"], slack["text"]) == (
                theirs["channel"],
                theirs["title"],
                theirs["text"],
            )
        assert bool(mine.get("emailConfigs")) == bool(r.get("email_configs"))
    assert receivers == {}
    assert [matchers(i["sourceMatch"]) + matchers(i["targetMatch"]) for i in config["inhibitRules"]] == [
        i["source_matchers"] + i["target_matchers"] for i in tested["inhibit_rules"]
    ]
    del values["alerting"]["alertmanagerConfig"]["email"]["to"]
    with pytest.raises(helm_python.HelmRenderError, match=r"alertmanagerConfig\.email\.to"):
        render(values)
