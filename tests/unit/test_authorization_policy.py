"""Knative mode: the chart's Istio AuthorizationPolicy at the cluster-local gateway, evaluated as
Istio evaluates a DENY policy (a request is refused when any rule matches it; a rule matches when
one of its sources and one of its operations do; `hosts` match case-insensitively, exactly or with
one `*` at either end). A predictor's names answer only its transformer (and, for Triton, the
console's re-reads); every other caller, a caller without a mesh identity included, is refused;
nobody else's services are touched."""

from __future__ import annotations

from typing import Any

from tests.unit.test_chart import PROD, render, values_of

NS = "eyeops"


def host_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower(), host.lower()
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    if pattern.endswith("*"):
        return host.startswith(pattern[:-1])
    return pattern == host


def source_matches(source: dict[str, Any], principal: str | None) -> bool:
    seen = principal or ""  # no mTLS: Istio sees no principal
    if "principals" in source and not any(host_matches(p, seen) for p in source["principals"]):
        return False
    excluded = source.get("notPrincipals", [])
    return not any(host_matches(p, seen) for p in excluded)


def operation_matches(operation: dict[str, Any], host: str) -> bool:
    if "hosts" in operation and not any(host_matches(p, host) for p in operation["hosts"]):
        return False
    excluded = operation.get("notHosts", [])
    return not any(host_matches(p, host) for p in excluded)


def refused(policies: list[dict[str, Any]], principal: str | None, host: str) -> bool:
    for policy in policies:
        assert policy["spec"]["action"] == "DENY"
        for rule in policy["spec"]["rules"]:
            sources = [f["source"] for f in rule.get("from", [])] or [{}]
            operations = [t["operation"] for t in rule.get("to", [])] or [{}]
            if any(source_matches(s, principal) for s in sources) and any(
                operation_matches(o, host) for o in operations
            ):
                return True
    return False


def knative(**extra: Any) -> list[dict[str, Any]]:
    values = values_of(PROD)
    values["kserve"] = {"deploymentMode": "Knative", **extra}
    return render(values)


def policies_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "AuthorizationPolicy"]


def sa(name: str, namespace: str = NS) -> str:
    return f"cluster.local/ns/{namespace}/sa/clinic-eyeops-{name}"


def names(service: str, namespace: str = NS) -> list[str]:
    bases = [f"{service}.{namespace}{suffix}" for suffix in ("", ".svc", ".svc.cluster.local")]
    return [b + port for b in bases for port in ("", ":80", ":8081")]


CALLERS = {
    "ocr-transformer": sa("ocr-transformer"),
    "lens-transformer": sa("lens-transformer"),
    "console": sa("console"),
    "a stranger in the namespace": f"cluster.local/ns/{NS}/sa/default",
    "the same name elsewhere": sa("ocr-transformer", "other"),
    "no mesh identity": None,
}


def test_a_predictor_answers_only_its_own_callers_through_the_gateway() -> None:
    policies = policies_of(knative())
    assert len(policies) == 1
    policy = policies[0]
    assert policy["metadata"]["namespace"] == "istio-system"
    assert policy["spec"]["selector"] == {"matchLabels": {"istio": "ingressgateway"}}
    allowed = {
        "ocr-predictor": {"ocr-transformer", "console"},
        "prev-ocr-predictor": {"ocr-transformer", "console"},
        "latest-ocr-predictor": {"ocr-transformer", "console"},
        "lens-predictor": {"lens-transformer"},
        "latest-lens-predictor": {"lens-transformer"},
        "ocr": set(CALLERS),  # the transformers' own names: their clients' way in
        "lens": set(CALLERS),
    }
    for service, callers in allowed.items():
        for host in names(service):
            for caller, principal in CALLERS.items():
                assert refused(policies, principal, host) == (caller not in callers), (caller, host)
    # Another namespace's services, one whose name starts like ours included, are not ours to close.
    for host in names("ocr-predictor", "eyeops2") + names("lens-predictor", "other"):
        assert not any(refused(policies, p, host) for p in CALLERS.values()), host


def test_each_allowed_principal_is_the_account_its_pods_run_as() -> None:
    objects = knative()
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    runs_as = {}
    for o in objects:
        if o["kind"] == "InferenceService":
            transformer = o["spec"]["transformer"]
            runs_as[f"{o['metadata']['name']}-transformer"] = transformer["serviceAccountName"]
            # the sidecar that proves the identity to the gateway
            assert transformer["annotations"]["sidecar.istio.io/inject"] == "true"
            assert "serviceAccountName" not in o["spec"]["predictor"]
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-console"):
            template = o["spec"]["template"]
            runs_as["console"] = template["spec"]["serviceAccountName"]
            assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"
    assert runs_as == {
        "ocr-transformer": "clinic-eyeops-ocr-transformer",
        "lens-transformer": "clinic-eyeops-lens-transformer",
        "console": "clinic-eyeops-console",
    }
    assert set(runs_as.values()) <= accounts
    principals = {
        p
        for rule in policies_of(objects)[0]["spec"]["rules"]
        for f in rule["from"]
        for p in f["source"]["notPrincipals"]
    }
    assert principals == {f"cluster.local/ns/{NS}/sa/{a}" for a in runs_as.values()}


def test_the_policy_follows_the_mesh_it_is_given() -> None:
    objects = knative(
        istio={
            "gatewayNamespace": "mesh",
            "gatewaySelector": {"app": "local-gw"},
            "trustDomain": "clinic.example",
        }
    )
    (policy,) = policies_of(objects)
    assert policy["metadata"]["namespace"] == "mesh"
    assert policy["spec"]["selector"] == {"matchLabels": {"app": "local-gw"}}
    transformer = "clinic.example/ns/eyeops/sa/clinic-eyeops-lens-transformer"
    assert not refused([policy], transformer, "lens-predictor.eyeops.svc.cluster.local")
    assert refused([policy], sa("lens-transformer"), "lens-predictor.eyeops.svc.cluster.local")


def test_no_policy_and_no_sidecar_where_there_is_no_gateway_to_close() -> None:
    for objects in (render(values_of(PROD)), knative(istio={"authorizationPolicy": False})):
        assert policies_of(objects) == []
        for o in objects:
            if o["kind"] == "InferenceService":
                assert "sidecar.istio.io/inject" not in o["spec"]["transformer"]["annotations"]
    # Without the console, Triton answers its transformer alone.
    values = values_of(PROD)
    values["kserve"] = {"deploymentMode": "Knative"}
    values["console"] = {**values.get("console", {}), "enabled": False}
    (policy,) = policies_of(render(values))
    assert refused([policy], sa("console"), "ocr-predictor.eyeops.svc.cluster.local")
    assert not refused([policy], sa("ocr-transformer"), "ocr-predictor.eyeops.svc.cluster.local")
