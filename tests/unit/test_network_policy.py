"""The chart's NetworkPolicies evaluated as Kubernetes would, as a matrix of (from, to, port) over the
release's pods, its clients, Prometheus, strangers in and outside the namespace, the stores and the
internet. The test fails on any allowed pair that is not in the intended matrix, and on any intended
pair that is not allowed."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tests.unit.test_chart import PROD, render, values_of

NAMESPACE = "eyeops"
SERVING = (8080, 8012, 9081)
PORTS = (53, 443, 5432, 6379, 6443, 6566, 8002, 8012, 8080, 8081, 8082, 9000, 9081, 9090, 9091)


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None  # None: an address outside the cluster
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ip: str | None = None


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        excluded = any(address in ipaddress.ip_network(e) for e in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if other.namespace is None:
        return False
    namespace_selector = peer.get("namespaceSelector")
    if namespace_selector is None:
        in_namespace = other.namespace == policy_namespace
    else:
        in_namespace = selects(namespace_selector, {"kubernetes.io/metadata.name": other.namespace})
    pod_selector = peer.get("podSelector")
    return in_namespace and (pod_selector is None or selects(pod_selector, other.labels))


def port_matches(ports: list[dict[str, Any]] | None, port: int) -> bool:
    if not ports:
        return True
    for p in ports:
        assert isinstance(p["port"], int), (
            f"named port {p['port']!r}: use numbers so the matrix can check them"
        )
        if p["port"] == port and p.get("protocol", "TCP") in ("TCP", "UDP"):
            return True
    return False


def direction_allows(
    policies: list[dict[str, Any]], subject: Endpoint, other: Endpoint, port: int, kind: str
) -> bool:
    """Whether the policies selecting `subject` let traffic to/from `other` on `port` (kind Ingress
    or Egress). A pod no policy selects for that direction is not isolated."""
    if subject.namespace is None:
        return True  # outside the cluster: no NetworkPolicy applies
    applying = [
        p
        for p in policies
        if p["metadata"].get("namespace", NAMESPACE) == subject.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not applying:
        return True
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for policy in applying:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if peers is not None and len(peers) == 0:
                raise AssertionError(f"{policy['metadata']['name']}: an empty '{peers_key}' allows everyone")
            if port_matches(rule.get("ports"), port) and (
                peers is None or any(peer_matches(p, NAMESPACE, other) for p in peers)
            ):
                return True
    return False


def allowed(policies: list[dict[str, Any]], src: Endpoint, dst: Endpoint, port: int) -> bool:
    return direction_allows(policies, src, dst, port, "Egress") and direction_allows(
        policies, dst, src, port, "Ingress"
    )


def release_pods(objects: list[dict[str, Any]]) -> list[Endpoint]:
    """The release's own workloads (labels from their pod templates) and its InferenceServices' pods."""
    pods = []
    for o in objects:
        template = None
        if o["kind"] == "Deployment":
            template = o["spec"]["template"]
        elif o["kind"] == "CronJob":
            template = o["spec"]["jobTemplate"]["spec"]["template"]
        elif o["kind"] == "Job":
            template = o["spec"]["template"]
        elif o["kind"] == "Pod":
            template = o
        if template is not None:
            labels = template["metadata"]["labels"]
            pods.append(Endpoint(labels["app.kubernetes.io/component"], NAMESPACE, labels))
        if o["kind"] == "InferenceService":
            name = o["metadata"]["name"]
            for component in ("transformer", "predictor"):
                labels = {"serving.kserve.io/inferenceservice": name, "component": component}
                pods.append(Endpoint(f"{name}-{component}", NAMESPACE, labels))
    return pods


def others() -> list[Endpoint]:
    return [
        Endpoint("dns", "kube-system", {"k8s-app": "kube-dns"}),
        Endpoint("gateway", "clinic-gateways", {"app": "gateway"}),
        Endpoint("gateway-here", NAMESPACE, {"eyeops.io/client": "ocr"}),
        Endpoint("lens-app", "clinic-apps", {"app": "emr"}),
        Endpoint("lens-app-here", NAMESPACE, {"eyeops.io/client": "lens"}),
        Endpoint("ingress", "istio-system", {"app": "istio-ingressgateway"}),
        Endpoint("activator", "knative-serving", {"app": "activator"}),
        Endpoint("prometheus", "monitoring", {"app": "prometheus"}),
        Endpoint("oidc-proxy", "oauth2-proxy", {"app.kubernetes.io/name": "oauth2-proxy"}),
        Endpoint("proxy-neighbour", "oauth2-proxy", {"app": "something-else"}),
        Endpoint("stranger-here", NAMESPACE, {"app": "something-else"}),
        Endpoint("stranger", "default", {"app": "something-else"}),
        Endpoint("database", None, ip="10.20.1.5"),
        Endpoint("api-server", None, ip="172.20.0.2"),
        Endpoint("other-private", None, ip="10.99.0.1"),
        Endpoint("internet", None, ip="8.8.8.8"),
    ]


def matrix(objects: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    ours = release_pods(objects)
    everyone = ours + others()
    found = set()
    for src in everyone:
        for dst in everyone:
            if src == dst or (src not in ours and dst not in ours):
                continue
            for port in PORTS:
                if allowed(policies, src, dst, port):
                    found.add((src.name, dst.name, port))
    return found


def pairs(
    src: str | list[str], dst: str | list[str], ports: tuple[int, ...] | int
) -> set[tuple[str, str, int]]:
    srcs = [src] if isinstance(src, str) else src
    dsts = [dst] if isinstance(dst, str) else dst
    port_list = (ports,) if isinstance(ports, int) else ports
    return {(s, d, p) for s in srcs for d in dsts for p in port_list}


def production_pairs(objects: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    """What the production values intend in KServe's Standard mode."""
    release = [p.name for p in release_pods(objects)]
    assert sorted(release) == sorted(
        ["monitor", "feast", "feast-apply", "feast-materialize", "test", "ocr-transformer", "ocr-predictor",
         "lens-transformer", "lens-predictor", "console", "seed"]
    )  # fmt: skip
    intended = (
        pairs([r for r in release if r != "seed"], "dns", 53)  # the seed Job talks to no one
        | pairs(["gateway", "gateway-here", "ingress", "test"], "ocr-transformer", SERVING)
        | pairs(["lens-app", "lens-app-here", "ingress", "test"], "lens-transformer", SERVING)
        | pairs("prometheus", ["ocr-transformer", "lens-transformer", "lens-predictor"], SERVING)
        | pairs("prometheus", "ocr-predictor", 8002)
        # KServe's loggers reach the monitor's sink port alone; the others its operator port alone
        | pairs(["ocr-transformer", "lens-transformer", "lens-predictor"], "monitor", 8082)
        | pairs(["prometheus", "test"], "monitor", 8080)
        | pairs("ocr-transformer", "ocr-predictor", (*SERVING, 9000))  # Triton's gRPC port too
        | pairs("oidc-proxy", "console", 8080)  # people reach the console only through the proxy's pods
        | pairs("prometheus", "console", 9091)  # its metrics port, never the pages
        | pairs("console", "database", 5432)
        | pairs("console", "ocr-predictor", SERVING)  # re-read from marked corners
        | pairs("console", "monitor", 8080)  # the operations page
        | pairs("lens-transformer", "lens-predictor", SERVING)
        | pairs(
            ["ocr-transformer", "lens-transformer", "feast", "feast-apply", "feast-materialize"],
            "database",
            (5432, 6379),
        )
        | pairs("monitor", "database", 5432)
        | pairs(["test", "lens-app"], "feast", 6566)  # feastClientNamespaces: the clinical apps
        | pairs("feast", "api-server", (443, 6443))  # Feast's Kubernetes auth: TokenReview
    )
    return intended


def test_the_production_release_allows_exactly_the_intended_pairs() -> None:
    objects = render(values_of(PROD))
    intended = production_pairs(objects)
    found = matrix(objects)
    assert not found - intended, sorted(found - intended)  # allowed, not intended
    assert not intended - found, sorted(intended - found)  # intended, not allowed


def test_knative_mode_admits_the_activator_and_the_cluster_local_gateway() -> None:
    """In Knative mode requests enter a pod through its queue-proxy (8012), from the activator or the
    cluster-local gateway (istio-system here), the autoscaler scrapes the queue-proxy (9090), and a
    transformer (the console, helm test) reaches a predictor through that gateway (8081)."""
    values = values_of(PROD)
    values["kserve"] = {"deploymentMode": "Knative"}
    objects = render(values)
    isvc = ["ocr-transformer", "ocr-predictor", "lens-transformer", "lens-predictor"]
    intended = (
        production_pairs(objects) - pairs("ocr-transformer", "ocr-predictor", 9000)  # HTTP to Triton
        | pairs("activator", isvc, (8012, 9090))
        | pairs("ingress", ["ocr-predictor", "lens-predictor"], 8012)
        | pairs(["ocr-transformer", "lens-transformer", "console", "test"], "ingress", 8081)
    )
    found = matrix(objects)
    assert not found - intended, sorted(found - intended)
    assert not intended - found, sorted(intended - found)
    for o in objects:
        if o["kind"] == "InferenceService":
            assert o["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"


def test_the_default_release_lets_nobody_but_its_test_reach_the_monitor() -> None:
    found = matrix(render())
    assert found == pairs(["monitor", "test"], "dns", 53) | pairs("test", "monitor", 8080)


def test_an_empty_peer_list_is_never_rendered() -> None:
    for values in (None, values_of(PROD)):
        for o in render(values):
            if o["kind"] != "NetworkPolicy":
                continue
            for rule in o["spec"].get("ingress", []):
                assert rule.get("from"), o["metadata"]["name"]
            for rule in o["spec"].get("egress", []):
                assert rule.get("to"), o["metadata"]["name"]
