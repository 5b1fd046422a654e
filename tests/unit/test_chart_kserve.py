"""The chart's InferenceServices and serving runtimes: no field the kserve SDK does not know, restricted
pods that log to the monitor, readiness, container args the entrypoints' parsers accept, network
policies, disruption budgets, the promotion Role, the OCR transformer's threshold and its Triton
protocol, helm test's addresses per mode, and two releases in one namespace."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from tests.unit.chart_helpers import CHART, KUBERNETES, PROD, kserve_containers, render, values_of


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


def test_every_inference_service_is_covered_by_a_network_policy() -> None:
    objects = render(values_of(PROD))
    selected = {
        p["spec"]["podSelector"]["matchLabels"].get("serving.kserve.io/inferenceservice")
        for p in objects
        if p["kind"] == "NetworkPolicy"
    }
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "InferenceService"} <= selected


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
