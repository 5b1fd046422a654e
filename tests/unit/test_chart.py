"""The Helm chart, verified without a cluster: rendered by Helm's own engine (helm-python-sdk) with
the default and every example values file, linted, core objects validated by kubernetes-validate
(strict), the restricted security settings on every pod, a NetworkPolicy over every workload, the
values schema refusing a misspelled key, a missing Secret named at template time, and the monitor's
args accepted by the real argument parser of the entrypoint they call."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from eyeops.resources import feature_repo_template
from eyeops.settings import repo_root

pytestmark = pytest.mark.unit

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


@pytest.fixture(params=[None, *EXAMPLES], ids=["defaults", *(p.parent.name for p in EXAMPLES)])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(values_of(request.param))


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


@pytest.mark.process
def test_kube_prometheus_stacks_selectors_find_the_rule_and_every_monitor(tmp_path: Path) -> None:
    """Issue 30, item 2: kube-prometheus-stack selects rules and monitors by its release label; every
    metric an alert or dashboard reads is scraped by a monitor the chart renders, under the job the
    expressions name; a target without metrics raises an alert (checked by promtool)."""
    values = values_of(PROD)
    values["alerting"] = {"labels": {"release": "kube-prometheus-stack"}}
    objects = render(values)
    selected = [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert all(o["metadata"]["labels"].get("release") == "kube-prometheus-stack" for o in selected)
    monitors = {
        o["metadata"]["name"].removeprefix("clinic-eyeops-"): o
        for o in selected
        if o["kind"] in ("ServiceMonitor", "PodMonitor")
    }
    assert set(monitors) == {"monitor", "console", "ocr-transformer", "ocr-predictor", "lens-transformer",
                             "lens-predictor"}  # fmt: skip
    for name, monitor in monitors.items():
        (endpoint,) = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        assert {"targetLabel": "job", "replacement": f"eyeops-{name}"} in endpoint["relabelings"]
    assert monitors["ocr-predictor"]["spec"]["podMetricsEndpoints"][0]["targetPort"] == 8002  # Triton
    assert monitors["lens-transformer"]["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "lens", "component": "transformer"
    }  # fmt: skip
    # Who exposes what: every metric a rule or dashboard reads has its exporter scraped.
    exporters = {
        "eyeops_ocr_review_rate": "monitor",  # the monitor's rolling gauge, not the transformer's
        "eyeops_ocr_": "ocr-transformer", "nv_": "ocr-predictor",
        "request_predict_seconds": "lens-transformer", "eyeops_review_": "console",
        "eyeops_lens_": "monitor", "eyeops_drift_": "monitor", "eyeops_monitor_": "monitor",
    }  # fmt: skip
    read = " ".join(
        [(CHART / "files" / "alerts" / "rules.yaml").read_text()]
        + [p.read_text() for p in (CHART / "files" / "dashboards").glob("*.json")]
    )
    names = set(re.findall(r"\b(?:eyeops|nv|request)_[a-z_]+", read))
    assert len(names) > 20
    for metric in names:
        owner = [e for prefix, e in exporters.items() if metric.startswith(prefix)]
        assert owner and owner[0] in monitors, metric
    assert 'job="eyeops-lens-transformer"' in read  # the SLO is the transformer's, end to end
    (rule,) = [o for o in selected if o["kind"] == "PrometheusRule"]
    absent = rule["spec"]["groups"][-1]["rules"]
    assert {r["labels"]["target"] for r in absent} == set(monitors)
    rules = tmp_path / "rendered.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    done = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


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


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=["defaults", *(p.parent.name for p in EXAMPLES)])
@pytest.mark.process
def test_monitor_args_are_accepted_by_the_entrypoint_parser(values: Path | None) -> None:
    deployment = next(
        o
        for o in render(values_of(values))
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-monitor")
    )
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


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_render_the_chart_with_their_values(overlay: str) -> None:
    folder = repo_root() / "k8s" / "overlays" / overlay
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"]
    chart_home = (folder / kustomization["helmGlobals"]["chartHome"]).resolve()
    (chart,) = kustomization["helmCharts"]
    assert chart_home / chart["name"] == CHART.resolve() and (folder / chart["valuesFile"]).is_file()
    assert any(o["kind"] == "Deployment" for o in render(values_of(folder / chart["valuesFile"])))


def unknown_fields(data: Any, klass: str, where: str = "") -> list[str]:
    """Paths in `data` that the kserve SDK's (or the Kubernetes client's) model `klass` does not
    have: what the SDK would drop, and the API server would refuse."""
    import re

    import kserve
    import kubernetes.client

    if klass in ("str", "int", "bool", "float", "object", "datetime") or klass.startswith("ResourceQuantity"):
        return []
    if m := re.fullmatch(r"list\[(.+)\]", klass):
        return [p for i, item in enumerate(data) for p in unknown_fields(item, m.group(1), f"{where}[{i}]")]
    if m := re.fullmatch(r"dict\(str, (.+)\)", klass):
        return [p for k, v in data.items() for p in unknown_fields(v, m.group(1), f"{where}.{k}")]
    model = getattr(kserve, klass, None) or getattr(kubernetes.client, klass, None)
    if model is None:
        return []  # IntOrString and the like: free-form
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    found = []
    for key, value in data.items():
        if key not in by_json:
            found.append(f"{where}.{key}")
        elif value is not None:
            found += unknown_fields(value, model.openapi_types[by_json[key]], f"{where}.{key}")
    return found


def test_kserve_objects_have_no_unknown_fields() -> None:
    objects = render(values_of(PROD))
    kinds = {"InferenceService": "V1beta1InferenceService", "ServingRuntime": "V1alpha1ServingRuntime"}
    checked = [o for o in objects if o["kind"] in kinds]
    assert sorted(o["kind"] for o in checked) == ["InferenceService"] * 2 + ["ServingRuntime"] * 2
    for o in checked:
        assert unknown_fields(o, kinds[o["kind"]]) == [], o["metadata"]["name"]
    assert unknown_fields({"spec": {"predictor": {"modle": {}}}}, "V1beta1InferenceService") == [
        ".spec.predictor.modle"
    ]


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


def test_kserve_pods_run_restricted_and_log_to_the_monitor() -> None:
    objects = render(values_of(PROD))
    for name, _, container in kserve_containers(objects):
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, name
        assert sc["readOnlyRootFilesystem"] is True and container["resources"]["limits"], name
    for o in (o for o in objects if o["kind"] == "InferenceService"):
        for component in ("predictor", "transformer"):
            spec = o["spec"][component]
            assert spec["automountServiceAccountToken"] is False
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    isvc = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "InferenceService"}
    monitor = "http://clinic-eyeops-monitor.eyeops.svc.cluster.local:8082"  # the sink's own port
    assert isvc["ocr"]["transformer"]["logger"] == {"mode": "response", "url": monitor}
    assert isvc["lens"]["predictor"]["logger"] == {"mode": "all", "url": monitor}
    assert isvc["ocr"]["predictor"]["model"]["protocolVersion"] == "v2"


def test_readiness_waits_for_the_predictor_and_the_mode_is_stated() -> None:
    """Triton is ready after its warmup; each transformer's probe asks /v2/health/ready, which
    includes its predictor's readiness; both InferenceServices name KServe's mode (Standard by
    default, as KServe's own default, so nothing depends on the cluster's configuration)."""
    objects = render(values_of(PROD))
    probed = {
        name: c["readinessProbe"]["httpGet"]["path"]
        for name, _, c in kserve_containers(objects)
        if "readinessProbe" in c
    }
    assert probed == {
        "clinic-eyeops-triton": "/v2/health/ready",
        "clinic-eyeops-lens": "/v2/health/ready",  # the lens predictor's runtime: ready once loaded
        "ocr/transformer": "/v2/health/ready",
        "lens/transformer": "/v2/health/ready",
    }
    # and every InferenceService container is restarted when its process stops answering at all
    alive = {name: c["livenessProbe"]["httpGet"]["path"] for name, _, c in kserve_containers(objects)}
    assert set(alive) == set(probed) and set(alive.values()) == {"/v2/health/live"}
    for o in (o for o in objects if o["kind"] == "InferenceService"):
        assert o["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard"}
    with pytest.raises(helm_python.HelmValuesError, match="deploymentMode"):
        render({"kserve": {"deploymentMode": "Serverless"}})  # KServe 0.21's name is Knative


def test_kserve_container_args_are_accepted_by_the_entrypoints_parsers() -> None:
    from kserve import model_server

    from inference.lens_predictor.__main__ import build_parser as lens_predictor
    from inference.lens_transformer.__main__ import build_parser as lens_transformer
    from inference.ocr_transformer.__main__ import build_parser as ocr_transformer

    parsers = {
        "inference.ocr_transformer": ocr_transformer,
        "inference.lens_transformer": lens_transformer,
        "inference.lens_predictor": lens_predictor,
    }
    # What KServe adds to a transformer's args: its name, the predictor's host and the port.
    injected = ["--predictor_host", "ocr-predictor.eyeops", "--http_port", "8080"]
    checked = set()
    for name, _, container in kserve_containers(render(values_of(PROD))):
        command = container.get("command", [])
        if command[:2] != ["python", "-m"]:
            assert command == ["tritonserver"], name
            continue
        args = [a.replace("{{.Name}}", "lens") for a in container["args"]]
        if "transformer" in name:
            args += injected
        own, rest = parsers[command[2]]().parse_known_args(args)
        _, unknown = model_server.parser.parse_known_args(rest)
        assert unknown == [], (name, unknown)
        assert own.model_name in ("ocr", "lens")
        checked.add(command[2])
    assert checked == set(parsers)


def test_every_server_in_the_chart_authenticates_its_callers() -> None:
    """Model servers start with a token registry (never --insecure), Triton restricts every API but
    health to its key, and the chart-made service credentials hold hashes of their own tokens."""
    from eyeops.auth import hash_token

    objects = render(values_of(PROD))
    secret = next(
        o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-service-credentials")
    )
    data = secret["stringData"]
    assert data["lens-predictor-callers"] == "lens-transformer " + hash_token(data["lens-predictor-token"])
    assert data["monitor-tokens"] == "operator " + hash_token(data["monitor-token"])
    assert data["monitor-read-tokens"] == "console " + hash_token(data["monitor-read-token"])
    assert len(data["triton-key"]) >= 32 and len(data["console-proxy-secret"]) >= 32
    # the console reads the monitor with its read-only token, never the operator's (issue 28, item 9)
    console = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-console")
    )
    volumes = {v["name"]: v for v in console["spec"]["template"]["spec"]["volumes"]}
    items = {i["key"]: i["path"] for i in volumes["credentials"]["secret"]["items"]}
    assert items.get("monitor-read-token") == "monitor-token" and "monitor-token" not in items
    servers = 0
    for name, _, container in kserve_containers(objects):
        args, env = container["args"], {e["name"]: e for e in container.get("env", [])}
        assert "--insecure" not in args, name
        if container["command"] == ["tritonserver"]:
            restricted = [
                a for a in args if a.startswith(("--http-restricted-api=", "--grpc-restricted-protocol="))
            ]
            assert len(restricted) == 2 and all(
                "inference" in a and "model-repository" in a for a in restricted
            )
            assert all(a.endswith(":x-eyeops-triton-key=$(EYEOPS_TRITON_KEY)") for a in restricted)
            assert env["EYEOPS_TRITON_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "triton-key"
        else:
            assert "--tokens" in args, name
        servers += 1
    assert servers == 4
    monitor = next(
        t for w, t in pods(objects) if w["metadata"]["labels"]["app.kubernetes.io/component"] == "monitor"
    )
    assert "--tokens" in monitor["spec"]["containers"][0]["args"]
    with_jwt = values_of(PROD)
    with_jwt["lens"]["transformer"]["jwt"] = {
        "issuer": "https://idp.example/realms/clinic",
        "audience": "eyeops-lens",
        "jwksConfigMap": {"name": "idp-jwks", "key": "jwks.json"},
    }
    (lens,) = [
        c
        for n, _, c in kserve_containers(render(with_jwt))
        if c["command"][2:] == ["inference.lens_transformer"]
    ]
    flags = lens["args"]
    assert flags[flags.index("--jwks_file") + 1] == "/etc/eyeops/jwks/jwks.json"
    assert flags[flags.index("--jwt_issuer") + 1] == "https://idp.example/realms/clinic"
    with pytest.raises(helm_python.HelmRenderError, match=r"lens\.transformer\.clientTokensSecret"):
        prod = values_of(PROD)
        prod["lens"]["transformer"]["clientTokensSecret"]["name"] = ""
        render(prod)


def test_every_inference_service_is_covered_by_a_network_policy() -> None:
    objects = render(values_of(PROD))
    selected = {
        p["spec"]["podSelector"]["matchLabels"].get("serving.kserve.io/inferenceservice")
        for p in objects
        if p["kind"] == "NetworkPolicy"
    }
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "InferenceService"} <= selected


def test_feast_server_and_jobs_run_the_feast_cli_on_the_cluster_profile() -> None:
    import click
    from feast.cli.cli import cli

    objects = render(values_of(PROD))
    by_component = {w["metadata"]["labels"]["app.kubernetes.io/component"]: t for w, t in pods(objects)}
    commands = {}
    for component in ("feast", "feast-apply", "feast-materialize"):
        container = by_component[component]["spec"]["containers"][0]
        env = {e["name"] for e in container["env"]}
        assert {"EYEOPS_FEAST_REGISTRY_URL", "EYEOPS_FEAST_REDIS", "EYEOPS_FEAST_PG_PASSWORD"} <= env
        argv = container["command"] + container.get("args", [])
        if argv[:2] == ["sh", "-c"]:  # the shell supplies the timestamp
            argv = (
                argv[2]
                .removeprefix("exec ")
                .replace('"$(date -u +%Y-%m-%dT%H:%M:%S)"', "2026-11-21T00:00:00")
                .split()
            )
        assert argv[0] == "feast"
        with cli.make_context("feast", argv[1:], resilient_parsing=False) as ctx:
            sub = cli.get_command(ctx, ctx.protected_args[0] if ctx.protected_args else ctx.args[0])
            assert isinstance(sub, click.Command)
            rest = (ctx.protected_args + ctx.args)[1:]
            sub.make_context(sub.name, rest)  # raises on an argument the real CLI does not take
            commands[component] = sub.name
    assert commands == {
        "feast": "serve",
        "feast-apply": "apply",
        "feast-materialize": "materialize-incremental",
    }
    apply_job = next(o for o in objects if o["kind"] == "Job")
    assert apply_job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert any(o["kind"] == "PodDisruptionBudget" for o in objects)  # two feature servers
    single = render(
        {
            **values_of(PROD),
            "feast": {"enabled": True, "secret": "s", "server": {"replicas": 1}},
        }
    )
    assert not any(
        o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"].endswith("-feast") for o in single
    )
    with pytest.raises(helm_python.HelmRenderError, match=r"feast\.secret"):
        render({"feast": {"enabled": True}, "networkPolicy": {"databaseCIDRs": ["10.20.0.0/16"]}})


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


def test_readiness_reports_what_is_not_ready() -> None:
    from eyeops.readiness import check

    assert check(["http://127.0.0.1:9/never"], attempts=1) == ["http://127.0.0.1:9/never"]


@pytest.mark.process
def test_dashboards_ship_and_their_queries_parse(tmp_path: Path) -> None:
    objects = render()
    maps = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard")
    ]
    boards = [json.loads(text) for m in maps for text in m["data"].values()]
    assert {b["uid"] for b in boards} == {"eyeops-ocr", "eyeops-lens"}
    exprs = [t["expr"] for b in boards for p in b["panels"] for t in p["targets"]]
    titles = " ".join(p["title"] for b in boards for p in b["panels"]).lower()
    for topic in ("exams per minute", "review rate", "latency", "triton", "coverage", "drift"):
        assert topic in titles
    # promtool parses PromQL: every query as a recording rule.
    rules = {
        "groups": [{"name": "q", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}]
    }
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(rules))
    import shutil

    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed; run: bash scripts/setup.sh"
    done = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "queries.yaml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_chart_readme_is_generated_from_the_values_comments(capsys: pytest.CaptureFixture[str]) -> None:
    from eyeops.chartdocs import documented_values
    from eyeops.cli import main

    assert main(["chart", "docs", "--check"]) == 0, capsys.readouterr().out
    keys = [k for k, _ in documented_values((CHART / "values.yaml").read_text())]
    assert "monitor.state" in keys and "ocr.storageUri" in keys and "networkPolicy.enabled" in keys


def test_feature_store_yaml_comes_from_values_and_matches_the_repository_profile() -> None:
    objects = render(values_of(PROD))
    config = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("feature-store")
    )
    shipped = yaml.safe_load(config["data"]["feature_store.yaml"])
    assert shipped == yaml.safe_load((feature_repo_template() / "feature_store.cluster.yaml").read_text())
    mounted = [
        name
        for name, spec, c in kserve_containers(objects)
        + [(w["metadata"]["name"], t["spec"], t["spec"]["containers"][0]) for w, t in pods(objects)]
        if any(m.get("subPath") == "feature_store.yaml" for m in c.get("volumeMounts", []))
    ]
    assert "lens/transformer" in mounted and "ocr/transformer" in mounted
    assert sum(n.startswith("clinic-eyeops-feast") for n in mounted) == 3  # server, apply, materialize


def test_inference_services_above_one_replica_get_disruption_budgets() -> None:
    values = values_of(PROD)
    assert not [
        o for o in render(values) if o["kind"] == "PodDisruptionBudget" and "-ocr-" in o["metadata"]["name"]
    ]
    values["ocr"]["minReplicas"] = 2
    budgets = [
        o for o in render(values) if o["kind"] == "PodDisruptionBudget" and "-ocr-" in o["metadata"]["name"]
    ]
    assert sorted(b["spec"]["selector"]["matchLabels"]["component"] for b in budgets) == [
        "predictor",
        "transformer",
    ]
    for budget in budgets:
        kubernetes_validate.validate(budget, KUBERNETES, strict=True)


def test_pipelines_may_patch_only_the_two_inference_services() -> None:
    objects = render(values_of(PROD))
    role = next(o for o in objects if o["kind"] == "Role" and "promot" in o["metadata"]["name"])
    assert role["rules"] == [
        {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
         "resourceNames": ["ocr", "lens"], "verbs": ["get", "patch"]}
    ]  # fmt: skip
    binding = next(o for o in objects if o["kind"] == "RoleBinding" and "promot" in o["metadata"]["name"])
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "default-editor", "namespace": "eyeops"}
    ]
    from eyeops.registry.deploy import KSERVE_GROUP

    assert role["rules"][0]["apiGroups"] == [KSERVE_GROUP]


def test_ocr_transformer_gets_the_confidence_threshold_settings_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eyeops.settings import Settings

    def threshold(values: dict[str, Any]) -> str:
        for name, _, container in kserve_containers(render(values)):
            if name.startswith("ocr") and container.get("command", [])[2:3] == ["inference.ocr_transformer"]:
                env = {e["name"]: e.get("value") for e in container["env"]}
                return str(env["EYEOPS_CONFIDENCE_THRESHOLD"])
        raise AssertionError("no OCR transformer rendered")

    prod = values_of(PROD)
    assert threshold(prod) == str(Settings().confidence_threshold)  # chart and service agree
    prod["ocr"]["transformer"]["confidenceThreshold"] = 0.99
    monkeypatch.setenv("EYEOPS_CONFIDENCE_THRESHOLD", threshold(prod))
    assert Settings().confidence_threshold == 0.99
    with pytest.raises(Exception, match="confidenceThreshold"):
        prod["ocr"]["transformer"]["confidenceThreshold"] = 1.5
        render(prod)


def render_on_a_cluster(
    tmp_path: Path, live: dict[str, dict[str, Any]], values: dict[str, Any], notes: list[str] | None = None
) -> list[dict[str, Any]]:
    """Render as `helm upgrade` does on a cluster that runs `live` (InferenceServices by name):
    offline `lookup` answers nothing, so the chart's one lookup of them (templates/_live.tpl) is
    replaced by what the API server would return. NOTES.txt goes to `notes` when given."""
    import shutil

    chart = tmp_path / "eyeops"
    shutil.copytree(CHART, chart)
    lookup = (
        '{{- lookup "serving.kserve.io/v1beta1" "InferenceService" .root.Release.Namespace .name | toJson -}}'
    )
    answers = ["{{- $live := dict }}"]  # what the API server returns: the object, or nothing
    for name, obj in live.items():
        found = json.dumps(json.dumps(obj))  # a template string literal of the object's JSON
        answers.append(f"{{{{- if eq .name {json.dumps(name)} }}}}{{{{- $live = {found} | fromJson }}}}")
        answers.append("{{- end }}")
    answers.append("{{- $live | toJson -}}")
    template = (CHART / "templates" / "_live.tpl").read_text()
    assert lookup in template
    (chart / "templates" / "_live.tpl").write_text(template.replace(lookup, "".join(answers)))
    loaded = helm_python.Chart.load(str(chart))
    try:
        out = loaded.render(values, name="clinic", namespace="eyeops", is_upgrade=True)
    finally:
        loaded.close()
    if notes is not None:
        notes.extend(text for p, text in out.items() if p.endswith("NOTES.txt"))
    return [
        d for p, text in out.items() if not p.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d
    ]


def test_an_upgrade_keeps_the_model_a_promotion_deployed(tmp_path: Path) -> None:
    """Install serves the values' storageUri; the pipeline promotes lens 9 by patching the live
    InferenceService; the next `helm upgrade` with the same values keeps lens 9 instead of putting
    the seed model back. With kserve.keepPromotedModels false (or without a cluster: helm template, Argo CD)
    the values win."""

    def served(objects: list[dict[str, Any]]) -> dict[str, str]:
        return {
            o["metadata"]["name"]: o["spec"]["predictor"]["model"]["storageUri"]
            for o in objects
            if o["kind"] == "InferenceService"
        }

    values = values_of(PROD)
    assert values["lens"]["storageUri"] == "pvc://eyeops-models/registry/lens/seed"
    installed = served(render(values))
    assert installed == {"ocr": values["ocr"]["storageUri"], "lens": values["lens"]["storageUri"]}
    promoted = {"spec": {"predictor": {"model": {"storageUri": "pvc://eyeops-models/registry/lens/9"}}}}
    notes: list[str] = []
    upgraded = served(render_on_a_cluster(tmp_path / "a", {"lens": promoted}, values, notes))
    assert upgraded == {**installed, "lens": "pvc://eyeops-models/registry/lens/9"}
    assert "serving pvc://eyeops-models/registry/lens/9" in notes[0]  # what runs, not the values'
    assert "eyeops registry rollback MODEL" in notes[0]
    pinned = {**values, "kserve": {"keepPromotedModels": False}}
    assert served(render_on_a_cluster(tmp_path / "b", {"lens": promoted}, pinned)) == installed


def test_a_first_install_seeds_the_models_the_defaults_point_at() -> None:
    """The post-install seed Job registers ocr/seed, lens/seed and detectors/seed in the registry
    folder of the models PVC, where the pipelines (registry_root /mnt/eyeops/registry) and the
    monitor's default detector path look; its commands are the CLI's own."""
    from eyeops.cli import build_parser

    objects = render()
    job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"].endswith("-seed"))
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    spec = job["spec"]["template"]["spec"]
    assert spec["volumes"][0] == {"name": "models", "persistentVolumeClaim": {"claimName": "eyeops-models"}}
    steps = spec["initContainers"] + spec["containers"]
    assert [c["name"] for c in steps] == ["seed", "fit-detectors", "register-detectors"]
    assert [c["image"] for c in steps] == [
        "eyeops/pipelines:0.1.0",
        "eyeops/detectors:0.1.0",
        "eyeops/pipelines:0.1.0",
    ]
    parser = build_parser()
    seed = parser.parse_args(steps[0]["command"][1:] + steps[0]["args"])
    assert (str(seed.root), seed.lens_eyes, str(seed.reference)) == (
        "/mnt/eyeops/registry",
        4000,
        "/var/lib/eyeops-seed/reference.npz",
    )
    register = parser.parse_args(steps[2]["command"][1:] + steps[2]["args"])
    assert (register.model, register.version, register.promote, register.exist_ok) == (
        "detectors",
        "seed",
        True,
        True,
    )
    assert (
        "--out /var/lib/eyeops-seed/detectors" in steps[1]["args"][0]
        and "/mnt/eyeops/registry/detectors/seed" in steps[1]["args"][0]
    )
    # The monitor loads what the seed registers: PVC root + registry/<model>/<version>.
    monitor = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-monitor")
    )
    args = monitor["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--detectors") + 1] == "/mnt/registry/registry/detectors/seed"
    only_ocr = render({"seed": {"lensEyes": 0}})
    job = next(o for o in only_ocr if o["kind"] == "Job" and o["metadata"]["name"].endswith("-seed"))
    assert "initContainers" not in job["spec"]["template"]["spec"]
    assert not [o for o in render({"seed": {"enabled": False}}) if o["metadata"]["name"].endswith("-seed")]


def test_the_ocr_transformer_calls_triton_over_grpc_where_kserve_gives_it_the_port() -> None:
    """Standard mode: KServe's predictor Service forwards each declared port, so the transformer
    calls Triton's gRPC port (9000); Knative mode: a revision serves one port, so HTTP."""

    def triton_call(values: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]] | None]:
        objects = render(values)
        (isvc,) = [o for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "ocr"]
        (runtime,) = [
            o for o in objects if o["kind"] == "ServingRuntime" and "triton" in o["metadata"]["name"]
        ]
        args = isvc["spec"]["transformer"]["containers"][0]["args"]
        return args, runtime["spec"]["containers"][0].get("ports")

    prod = values_of(PROD)
    args, ports = triton_call(prod)
    at = args.index("--predictor_protocol")
    assert args[at + 1] == "grpc-v2"
    assert args[args.index("--predictor_host") + 1] == "ocr-predictor.eyeops.svc.cluster.local:9000"
    assert ports == [
        {"name": "http1", "containerPort": 8080, "protocol": "TCP"},  # first: the Service's port 80
        {"name": "grpc", "containerPort": 9000, "protocol": "TCP"},
    ]
    for mode, protocol in (("Knative", "auto"), ("Standard", "http"), ("Knative", "http")):
        values = values_of(PROD)
        values["kserve"] = {"deploymentMode": mode}
        values["ocr"]["transformer"]["tritonProtocol"] = protocol
        args, ports = triton_call(values)
        assert args[args.index("--predictor_protocol") + 1] == "v2" and "--predictor_host" not in args
        assert ports is None
    values = values_of(PROD)
    values["kserve"] = {"deploymentMode": "Knative"}
    values["ocr"]["transformer"]["tritonProtocol"] = "grpc"
    with pytest.raises(
        helm_python.HelmRenderError, match=r"tritonProtocol: grpc needs kserve\.deploymentMode Standard"
    ):
        render(values)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_each_overlay_installs_on_an_empty_cluster_from_what_the_seed_job_registers(path: Path) -> None:
    """A first install has only the seed Job's versions (ocr/seed, lens/seed, detectors/seed, on its
    claim): an overlay that names another version cannot start on a fresh cluster."""
    objects = render(values_of(path))
    (seed,) = [o for o in objects if o["kind"] == "Job" and o["metadata"]["name"].endswith("-seed")]
    claim = seed["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    named = []
    for o in objects:
        if o["kind"] == "InferenceService":
            uri = o["spec"]["predictor"]["model"]["storageUri"]
            named.append(uri)
            assert uri == f"pvc://{claim}/registry/{o['metadata']['name']}/seed", uri
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-monitor"):
            volumes = o["spec"]["template"]["spec"]["volumes"]
            args = o["spec"]["template"]["spec"]["containers"][0]["args"]
            detectors = args[args.index("--detectors") + 1]
            named.append(detectors)
            assert detectors.endswith("/registry/detectors/seed"), detectors
            assert any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in volumes)
    assert len(named) == (3 if path == PROD else 1), named  # dev: the monitor alone


def test_helm_test_probes_the_address_kserve_gives_each_mode() -> None:
    """Standard mode: KServe names the transformer's Service <isvc>-transformer; the bare <isvc>
    name exists only as Knative's route."""
    for mode, ocr, lens in (
        ("Standard", "ocr-transformer", "lens-transformer"),
        ("Knative", "ocr", "lens"),
    ):
        values = values_of(PROD)
        values["kserve"] = {"deploymentMode": mode}
        (pod,) = [
            o for o in render(values) if o["kind"] == "Pod" and o["metadata"]["name"].endswith("-test-ready")
        ]
        urls = pod["spec"]["containers"][0]["args"]
        assert f"http://{ocr}.eyeops.svc.cluster.local/v2/models/ocr/ready" in urls, urls
        assert f"http://{lens}.eyeops.svc.cluster.local/v2/models/lens/ready" in urls, urls


def credential_readers(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The credentials checksum of every pod that reads the internal credentials, by workload."""
    found = {}
    for o in objects:
        if o["kind"] == "InferenceService":
            for component in ("predictor", "transformer"):
                annotations = o["spec"][component]["annotations"]
                found[f"{o['metadata']['name']}-{component}"] = annotations["eyeops.io/credentials"]
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(("-console", "-monitor")):
            annotations = o["spec"]["template"]["metadata"]["annotations"]
            found[o["metadata"]["name"]] = annotations["eyeops.io/credentials"]
    return found


def test_credentials_made_by_the_chart_and_every_reader_roll_together() -> None:
    """Made once per render and shared: the Secret's values and every reader's checksum agree, so
    a render that makes new ones (a rotation, or an offline render) restarts every reader with
    them, never some pods on old keys and some on new."""
    import hashlib

    first, second = render(values_of(PROD)), render(values_of(PROD))
    for objects in (first, second):
        (secret,) = [
            o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-credentials")
        ]
        data = secret["stringData"]
        keys = ("console-proxy-secret", "console-session-key", "lens-predictor-token", "monitor-read-token",
                "monitor-token", "triton-key")  # fmt: skip
        made = json.dumps({k: data[k] for k in keys}, separators=(",", ":"))
        expected = hashlib.sha256(f"{made}/".encode()).hexdigest()[:16]
        readers = credential_readers(objects)
        assert set(readers) == {"ocr-predictor", "ocr-transformer", "lens-predictor", "lens-transformer",
                                "clinic-eyeops-console", "clinic-eyeops-monitor"}  # fmt: skip
        assert set(readers.values()) == {expected}
    assert credential_readers(first) != credential_readers(second)  # offline: new ones, all roll


def test_an_existing_secret_makes_renders_repeatable_and_a_rotation_rolls_every_reader() -> None:
    """GitOps renders without a cluster on every sync: with credentials.existingSecret the chart
    makes no Secret, every reader names the given one, and two renders are the same."""
    values = values_of(PROD)
    values["credentials"] = {"existingSecret": "clinic-credentials"}
    first, second = render(values), render(values)
    assert first == second
    assert not any(o["kind"] == "Secret" and "credentials" in o["metadata"]["name"] for o in first)
    text = json.dumps(first)
    assert "clinic-eyeops-service-credentials" not in text and text.count('"clinic-credentials"') >= 7
    values["credentials"]["rotation"] = "2026-12"
    rotated = credential_readers(render(values))
    assert len(set(rotated.values())) == 1 and rotated != credential_readers(first)


def test_eyeops_chart_credentials_writes_what_the_chart_would_make(tmp_path: Path) -> None:
    """The Secret for credentials.existingSecret has the chart's keys, and its hashed registries are
    derived as the chart derives them (so the servers accept the tokens)."""
    from eyeops.chartdocs import service_credentials
    from eyeops.cli import main

    (made,) = [
        o["stringData"]
        for o in render(values_of(PROD))
        if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-service-credentials")
    ]
    assert service_credentials(made.__getitem__) == made
    out = tmp_path / "credentials.yaml"
    assert (
        main(
            [
                "chart",
                "credentials",
                "--name",
                "clinic-credentials",
                "--namespace",
                "eyeops",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_mode & 0o777 == 0o600
    secret = yaml.safe_load(out.read_text())
    assert secret["metadata"] == {"name": "clinic-credentials", "namespace": "eyeops"}
    assert set(secret["stringData"]) == set(made) and secret["stringData"]["triton-key"] != made["triton-key"]


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
    assert budgets == {"console", "feast", "ocr-predictor", "ocr-transformer"}
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


def test_a_changed_feature_store_config_rolls_the_pods_that_read_it() -> None:
    """feature_store.yaml is mounted with subPath, which never updates in place: the transformers
    and the feature server carry its checksum, so a change restarts them (and only them)."""

    def checksums(values: dict[str, Any]) -> dict[str, str | None]:
        return {
            name: meta["annotations"].get("eyeops.io/feature-store")
            for name, (meta, _) in pod_specs(render(values)).items()
            if name in ("ocr-transformer", "lens-transformer", "ocr-predictor", "clinic-eyeops-feast")
        }

    values = values_of(PROD)
    before = checksums(values)
    assert (
        before["ocr-predictor"] is None
        and len({before["lens-transformer"], before["clinic-eyeops-feast"]}) == 1
    )
    values["feast"]["featureStore"] = {**values.get("feast", {}).get("featureStore", {}), "project": "other"}
    after = checksums(values)
    for name in ("ocr-transformer", "lens-transformer", "clinic-eyeops-feast"):
        assert after[name] and after[name] != before[name], name


def test_the_feature_server_is_off_unless_someone_may_call_it_and_can_check_their_tokens() -> None:
    """Issue 30, item 8: by default no namespace may call Feast's server, so it is not installed
    (nor its cluster-wide TokenReview binding); switched on with kubernetes auth, the API server's
    addresses are required, or the NetworkPolicy would block the TokenReview every call needs."""
    values = values_of(PROD)
    values["feast"]["server"] = {"enabled": False}
    objects = render(values)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Deployment", "clinic-eyeops-feast") not in names
    assert not any(kind == "ClusterRoleBinding" for kind, _ in names)
    assert ("Job", "clinic-eyeops-feast-apply") in names and (
        "CronJob",
        "clinic-eyeops-feast-materialize",
    ) in names
    assert ("NetworkPolicy", "clinic-eyeops-feast-jobs") in names and (
        "NetworkPolicy",
        "clinic-eyeops-feast",
    ) not in names
    values["feast"]["server"] = {"enabled": True}
    values["networkPolicy"]["apiServerCIDRs"] = []
    with pytest.raises(helm_python.HelmRenderError, match=r"networkPolicy\.apiServerCIDRs"):
        render(values)
    values["feast"]["server"]["auth"] = "none"
    assert not any(o["kind"] == "ClusterRoleBinding" for o in render(values))


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


def test_two_releases_in_one_namespace_name_their_inference_services_apart() -> None:
    """Issue 30, item 7: InferenceService names were fixed (ocr, lens), so one release per
    namespace. With ocr.name / lens.name, every object that names an InferenceService, its pods or
    its Services follows: selectors, the console's Triton URL, helm test, the monitor's services,
    the promotion Role, the Istio policy's hosts; and no object of one release is another's."""

    def rendered(values: dict[str, Any], name: str) -> list[dict[str, Any]]:
        chart = helm_python.Chart.load(str(CHART))
        try:
            out = chart.render(values, name=name, namespace="eyeops", is_install=True)
        finally:
            chart.close()
        return [
            d
            for path, text in out.items()
            if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text)
            if d
        ]

    def isvc_labels(data: Any, found: set[str]) -> set[str]:
        if isinstance(data, dict):
            for key, value in data.items():
                if key == "serving.kserve.io/inferenceservice":
                    found.add(value)
                isvc_labels(value, found)
        elif isinstance(data, list):
            for value in data:
                isvc_labels(value, found)
        return found

    for mode in ("Standard", "Knative"):
        first, second = values_of(PROD), values_of(PROD)
        for values in (first, second):
            values["kserve"] = {**values.get("kserve", {}), "deploymentMode": mode}
        second["ocr"]["name"], second["lens"]["name"] = "ocr-b", "lens-b"
        a, b = rendered(first, "clinic"), rendered(second, "second")

        def key(o: dict[str, Any]) -> tuple[str, str, str]:
            return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]

        assert not {key(o) for o in a} & {key(o) for o in b}, mode
        assert {o["metadata"]["name"] for o in b if o["kind"] == "InferenceService"} == {"ocr-b", "lens-b"}
        assert isvc_labels(b, set()) == {"ocr-b", "lens-b"} and isvc_labels(a, set()) == {"ocr", "lens"}
        text = json.dumps(b)
        assert "http://ocr-b-predictor.eyeops.svc.cluster.local" in text  # the console's re-reads
        host = "ocr-b" if mode == "Knative" else "ocr-b-transformer"
        assert f"http://{host}.eyeops.svc.cluster.local/v2/models/ocr/ready" in text  # helm test
        assert '"ocr-b=ocr"' in text and '"lens-b=lens"' in text  # the monitor's services
        (role,) = [o for o in b if o["kind"] == "Role" and "inferenceservices" in json.dumps(o)]
        assert next(r for r in role["rules"] if "inferenceservices" in r["resources"])["resourceNames"] == [
            "ocr-b",
            "lens-b",
        ]
        if mode == "Knative":
            hosts = [
                h
                for o in b
                if o["kind"] == "AuthorizationPolicy"
                for h in re.findall(r"[\w.-]+-predictor\.eyeops", json.dumps(o))
            ]
            assert hosts and {
                h.split("-predictor")[0].removeprefix("prev-").removeprefix("latest-") for h in hosts
            } == {"ocr-b", "lens-b"}
