"""The local stack as an attacker on the same machine would probe it, every server real (tritonserver,
the OCR and lens kserve.ModelServer processes, the monitor's uvicorn, PostgreSQL, Feast):

- every route each server lists (KServe's and the monitor's OpenAPI; Triton's v2 API) refuses no
  credentials, a wrong token and another component's token; probes and metrics stay open;
- the OCR transformer's gRPC port refuses a call without a device token;
- thousands of fuzzed requests per service give no 5xx, kill no process and store nothing;
- the forged-outcome sequence and the other poisoning moves are refused at each step;
- no patient identifier appears in any error body or in any server's log.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from eyeops.auth import bearer
from eyeops.db import ResultsStore
from eyeops.devices import load_layouts
from eyeops.settings import Settings
from eyeops.stack.credentials import LocalCredentials
from eyeops.stack.lens import LensStack, local_eye_features, prepare_local_lens
from eyeops.stack.local import LocalStack
from eyeops.stack.monitor import MonitorStack, prepare_local_detectors
from eyeops.stack.process import ManagedProcess, free_port, free_triton_port
from tests.conftest import create_pg_database, drop_pg_database
from tests.fuzz import PATIENT_LIKE, requests_for

pytestmark = pytest.mark.slow
PATIENT_ID = re.compile(r"P\d{7}")
FUZZ_PER_SERVICE = 2000
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


@dataclass
class Site:
    cred: LocalCredentials
    ocr: str
    ocr_grpc: int
    triton: str
    lens: str
    predictor: str
    monitor: str
    logs: Path
    store: ResultsStore
    eye_ids: list[str]
    processes: list[ManagedProcess]
    error_bodies: list[str] = field(default_factory=list)

    def token(self, who: str) -> dict[str, str]:
        c = self.cred
        files = {
            "device": c.device_token,
            "client": c.client_token,
            "service": c.predictor_token,
            "operator": c.monitor_token,
            "logger": c.logger_token,
        }
        return bearer(files[who])

    def keep(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            self.error_bodies.append(response.text)
        return response


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("security")
    cred = LocalCredentials.provision(root / "credentials")
    name, url = create_pg_database()
    model_dir, repo, eye_ids = prepare_local_lens(root / "lens", say=lambda _: None)
    detectors = prepare_local_detectors(root / "lens", model_dir, ert=200, say=lambda _: None)
    logs = root / "log"
    monitor = MonitorStack(
        detectors, root / "monitor.db", logs, credentials=cred, kinds=load_layouts().kinds()
    )
    ocr = LocalStack(
        Settings(data_dir=root),
        triton_port=free_triton_port(),
        ocr_port=free_port(),
        database_url=url,
        logger_url=monitor.url,
        credentials=cred,
    )
    lens = LensStack(model_dir, repo, logs, logger_url=monitor.url, credentials=cred)
    try:
        with monitor, ocr as ocr_endpoints, lens as lens_endpoints:
            yield Site(
                cred,
                ocr_endpoints.ocr,
                ocr.ocr_grpc_port,
                ocr_endpoints.triton,
                lens_endpoints.lens,
                lens_endpoints.predictor,
                monitor.url,
                logs,
                ResultsStore.from_url(url),
                eye_ids,
                [monitor.process, *ocr.processes, *lens.processes],
            )
    finally:
        drop_pg_database(name)


# -- every route x {none, wrong, another component's} -------------------------------------------------
OPEN = re.compile(
    r"^/(|metrics|healthz|v2/health/(live|ready)|v1/models/[^/:]+|v2/models/[^/]+(/versions/[^/]+)?/ready)$"
)
TRITON_ROUTES = [
    ("GET", "/v2"), ("GET", "/v2/models/trocr"), ("GET", "/v2/models/trocr/config"),
    ("GET", "/v2/models/trocr/stats"), ("POST", "/v2/models/trocr/infer"), ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/trocr/unload"), ("POST", "/v2/repository/models/trocr/load"),
    ("GET", "/v2/systemsharedmemory/status"), ("GET", "/v2/trace/setting"), ("GET", "/v2/logging"),
]  # fmt: skip


def routes_of(base: str, auth: dict[str, str], model: str) -> list[tuple[str, str]]:
    """Every (method, path) the app says it serves, path parameters filled in."""
    spec = httpx.get(f"{base}/openapi.json", headers=auth, timeout=10)
    assert spec.status_code == 200, spec.text
    out = []
    for template, methods in spec.json()["paths"].items():
        path = template.replace("{model_name}", model).replace("{model_version}", "1")
        path = re.sub(r"\{[^}]+\}", "x", path)
        out += [(method.upper(), path) for method in methods]
    assert len(out) >= 5, out
    return out


@pytest.mark.parametrize(
    ("server", "own", "other", "model"),
    [
        ("ocr", "device", "client", "ocr"),
        ("lens", "client", "device", "lens"),
        ("predictor", "service", "client", "lens"),
        ("monitor", "operator", "logger", ""),
    ],
)
def test_every_route_refuses_missing_wrong_and_foreign_credentials(
    site: Site, server: str, own: str, other: str, model: str
) -> None:
    base = getattr(site, server)
    routes = routes_of(base, site.token(own), model)
    if server == "monitor":
        routes += [("GET", "/openapi.json")]
    else:
        routes += [
            ("GET", "/openapi.json"),
            ("GET", "/v2/repository/index"),
            ("POST", "/v2/repository/index"),
        ]
    guarded = [(m, p) for m, p in routes if not OPEN.match(p)]
    assert len(guarded) >= 4, guarded
    for method, path in guarded:
        # The monitor's sink takes the payload loggers' token, its other routes the operators'.
        sink = server == "monitor" and path in ("/", "/events")
        foreign = site.token("operator" if sink else other)
        for headers in ({}, {"authorization": "Bearer not-a-token"}, foreign):
            reply = site.keep(httpx.request(method, base + path, headers=headers, timeout=10))
            assert reply.status_code == 401, (server, method, path, headers.keys(), reply.status_code)
        allowed = httpx.request(
            method, base + path, headers=site.token("logger" if sink else own), timeout=30
        )
        if "/repository" in path:  # load/unload/index: refused even to the server's own callers
            assert allowed.status_code == 403, (server, path, allowed.text)
        else:
            assert allowed.status_code not in (401, 403) and allowed.status_code < 500, (
                server,
                path,
                allowed.text,
            )
    opened = [(m, p) for m, p in routes if OPEN.match(p) and m == "GET"]
    print(f"{server}: {len(guarded)} routes refused without its credentials, {len(opened)} probes open")
    for _, path in opened:
        assert httpx.get(base + path, timeout=10).status_code not in (401, 403), (server, path)


def test_triton_serves_only_health_without_its_key(site: Site) -> None:
    key = {"x-eyeops-triton-key": site.cred.read_triton_key()}
    for method, path in TRITON_ROUTES:
        for headers in ({}, {"x-eyeops-triton-key": "wrong"}, site.token("device")):
            reply = httpx.request(method, site.triton + path, headers=headers, timeout=10)
            assert reply.status_code in (401, 403), (path, reply.status_code, reply.text)
    assert httpx.get(site.triton + "/v2/models/trocr/config", headers=key, timeout=10).status_code == 200
    assert httpx.get(site.triton + "/v2/health/ready", timeout=10).status_code == 200
    # Still loaded: the refused unload above did nothing.
    assert httpx.get(site.triton + "/v2/models/trocr/ready", timeout=10).status_code == 200


def test_the_ocr_grpc_port_needs_a_device_token(site: Site) -> None:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{site.ocr_grpc}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live  # probes stay open
    request = pb.ModelInferRequest(model_name="ocr", inputs=[])
    for metadata in ((), (("authorization", "Bearer not-a-token"),), tuple(site.token("client").items())):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, metadata=metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as meta:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="ocr"), metadata=metadata, timeout=10)
        assert meta.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as wrong_body:  # authenticated: the body is what is wrong now
        stub.ModelInfer(request, metadata=tuple(site.token("device").items()), timeout=30)
    assert wrong_body.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


# -- fuzz --------------------------------------------------------------------------------------------
def ocr_templates() -> list[object]:
    image = "iVBORw0KGgo="
    return [
        {"instances": [{"image_b64": image, "device_kind": "optical_biometer", "patient_id": PATIENT_LIKE[0],
                        "laterality": "OD", "exam_date": "2026-03-01", "device_id": "local-device"}]},
        {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}],
         "parameters": {"device_kind": "autorefractor", "patient_id": PATIENT_LIKE[1]}},
    ]  # fmt: skip


def lens_templates(features: dict[str, float]) -> list[object]:
    eye = PATIENT_LIKE[0] + "-OD"
    return [
        {"instances": [{"eye_id": eye}, {"eye_id": PATIENT_LIKE[1] + "-OS"}]},
        {"inputs": [{"name": "eye_id", "shape": [1], "datatype": "BYTES", "data": [eye]}]},
        {"instances": [{**features, "eye_id": eye}]},
        {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in features.items()]},
    ]


def monitor_templates(features: dict[str, float]) -> list[object]:
    sizes = [
        {"size_mm": s, "vault_um": 500.0, "lower_um": 300.0, "upper_um": 700.0}
        for s in (12.1, 12.6, 13.2, 13.7)
    ]
    return [
        {"instances": [{**features, "eye_id": PATIENT_LIKE[0] + "-OD"}]},
        {"predictions": [{"sizes": sizes, "recommended_size_mm": 12.6, "eye_id": PATIENT_LIKE[1] + "-OS"}]},
        {"predictions": [{"device_kind": "anterior_segment_oct", "patient_id": PATIENT_LIKE[0],
                          "laterality": "OD", "fields": [{"name": "vault_um", "value": 500.0,
                                                          "confidence": 0.99, "status": "accepted"}]}]},
        {"outputs": [{"name": "prediction", "shape": [1], "datatype": "BYTES", "data": ["{}"]}]},
    ]  # fmt: skip


def fuzz(site: Site, base: str, paths: list[str], templates: list[object], auth: dict[str, str],
         seed: int, extra_headers: object = None) -> dict[int, int]:  # fmt: skip
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=60) as client:
        for n, req in enumerate(requests_for(templates, FUZZ_PER_SERVICE, seed)):
            headers = {**req.headers, **auth}
            if callable(extra_headers):
                headers.update(extra_headers(n))
            reply = site.keep(client.post(base + paths[n % len(paths)], content=req.body, headers=headers))
            statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
            assert reply.status_code < 500, (base, paths[n % len(paths)], req.body[:300], reply.text[:300])
    return statuses


def test_fuzzed_requests_get_4xx_never_5xx_and_store_nothing(site: Site) -> None:
    features = next(iter(local_eye_features().values()))
    before = site.store.counts()
    ocr = fuzz(site, site.ocr, ["/v1/models/ocr:predict", "/v2/models/ocr/infer"], ocr_templates(),
               site.token("device"), seed=1)  # fmt: skip
    lens_paths = ["/v1/models/lens:predict", "/v2/models/lens/infer"]
    lens = fuzz(site, site.lens, lens_paths, lens_templates(features), site.token("client"), seed=2)
    predictor = fuzz(site, site.predictor, [*lens_paths, "/v1/models/lens:explain"], lens_templates(features),
                     site.token("service"), seed=3)  # fmt: skip

    def event(n: int) -> dict[str, str]:
        kinds = [
            (REQUEST, "lens", "predictor"),
            (RESPONSE, "lens", "predictor"),
            (RESPONSE, "ocr", "transformer"),
            (RESPONSE, "lens", "transformer"),
            ("x.y", "lens", "explainer"),
            (REQUEST, "P1", "predictor"),
        ]
        ce_type, service, component = kinds[n % len(kinds)]
        return {"ce-specversion": "1.0", "ce-id": f"fuzz-{n}", "ce-type": ce_type, "ce-source": "http://x/",
                "ce-inferenceservicename": service, "ce-component": component}  # fmt: skip

    monitor = fuzz(site, site.monitor, ["/"], monitor_templates(features), site.token("logger"), seed=4,
                   extra_headers=event)  # fmt: skip
    feedback = fuzz(site, site.monitor, ["/feedback"],
                    [{"eye_id": site.eye_ids[0], "implanted_size_mm": 12.6, "surgery_date": "2026-03-01"}],
                    site.token("operator"), seed=5)  # fmt: skip
    for name, statuses in (("ocr", ocr), ("lens", lens), ("predictor", predictor), ("monitor", monitor),
                           ("feedback", feedback)):  # fmt: skip
        assert sum(statuses.values()) == FUZZ_PER_SERVICE
        print(f"fuzz {name}: {FUZZ_PER_SERVICE} requests, statuses {dict(sorted(statuses.items()))}")
    assert all(p.returncode() is None for p in site.processes), [p.name for p in site.processes]
    after = site.store.counts()
    assert {k: after[k] for k in ("exams", "fields", "review_items")} == {
        k: before[k] for k in ("exams", "fields", "review_items")
    }


# -- poisoning the monitor ---------------------------------------------------------------------------
def status(site: Site) -> dict[str, object]:
    reply = httpx.get(site.monitor + "/status", headers=site.token("operator"), timeout=10)
    assert reply.status_code == 200
    return dict(reply.json())


def post_event(site: Site, ce_id: str, ce_type: str, service: str, component: str, body: object,
               auth: dict[str, str]) -> httpx.Response:  # fmt: skip
    headers = {"ce-specversion": "1.0", "ce-id": ce_id, "ce-type": ce_type, "ce-source": "http://x/",
               "ce-inferenceservicename": service, "ce-component": component,
               "content-type": "application/json", **auth}  # fmt: skip
    return site.keep(httpx.post(site.monitor + "/", content=json.dumps(body), headers=headers, timeout=30))


def test_the_forged_outcome_sequence_is_refused_at_each_step(site: Site) -> None:
    eye = site.eye_ids[-1]
    patient, side = eye.rsplit("-", 1)
    sizes = [{"size_mm": s, "vault_um": 2000.0, "lower_um": 1900.0, "upper_um": 2100.0}
             for s in (12.1, 12.6, 13.2, 13.7)]  # fmt: skip
    forged_answer = {"predictions": [{"sizes": sizes, "recommended_size_mm": 12.6, "eye_id": eye}]}
    forged_vault = {"predictions": [{"device_kind": "anterior_segment_oct", "patient_id": patient,
                                     "laterality": side, "exam_date": "2026-06-01",
                                     "fields": [{"name": "vault_um", "value": 600.0, "confidence": 0.99,
                                                 "status": "accepted"}]}]}  # fmt: skip
    feedback = {"eye_id": eye, "implanted_size_mm": 12.6, "surgery_date": "2026-03-01"}
    outcomes = status(site)["outcomes"]
    for auth in ({}, {"authorization": "Bearer forged"}, site.token("client"), site.token("device")):
        assert post_event(site, "f1", RESPONSE, "lens", "transformer", forged_answer, auth).status_code == 401
        assert post_event(site, "f2", RESPONSE, "ocr", "transformer", forged_vault, auth).status_code == 401
        fb = site.keep(httpx.post(site.monitor + "/feedback", json=feedback, headers=auth, timeout=10))
        assert fb.status_code == 401
    # With the operator's token, feedback about an eye the lens service never answered for is refused.
    fb = site.keep(
        httpx.post(site.monitor + "/feedback", json=feedback, headers=site.token("operator"), timeout=10)
    )
    assert fb.status_code == 422 and "no logged lens prediction" in fb.json()["error"]
    assert status(site)["outcomes"] == outcomes


def test_refused_predictions_replays_odd_labels_and_floods_never_reach_the_windows(site: Site) -> None:
    features = next(iter(local_eye_features().values()))
    service = site.token("service")
    window = dict(status(site)["window_rows"]).get("lens_features", 0)
    # A request the predictor refused (ACD 1e308 -> 422) is logged, but its features never count.
    implausible = {"instances": [{**features, "acd_mm": 1e308}]}
    refused = site.keep(
        httpx.post(site.predictor + "/v1/models/lens:predict", json=implausible, headers=service)
    )
    assert refused.status_code == 422
    # Two distinct predictions with the same client Ce-Id both count; the same one sent twice counts once.
    for n, wtw in enumerate((11.5, 11.9)):
        body = {"instances": [{**features, "wtw_mm": wtw}]}
        for _ in range(2 if n == 1 else 1):
            ok = httpx.post(site.predictor + "/v1/models/lens:predict", json=body,
                            headers={**service, "ce-id": "same-client-id"})  # fmt: skip
            assert ok.status_code == 200
    deadline = time.monotonic() + 20
    while (
        dict(status(site)["window_rows"]).get("lens_features", 0) < window + 2 and time.monotonic() < deadline
    ):
        time.sleep(0.3)
    time.sleep(1.0)  # the replay (same Ce-Id, same body) would have landed by now
    assert dict(status(site)["window_rows"]).get("lens_features", 0) == window + 2
    logger = site.token("logger")
    # A device kind the monitor was not told about never becomes a metric label.
    odd = {"predictions": [{"device_kind": PATIENT_LIKE[0] + "-OD", "fields": []}]}
    assert post_event(site, "odd-1", RESPONSE, "ocr", "transformer", odd, logger).status_code == 202
    metrics = httpx.get(site.monitor + "/metrics", timeout=10).text
    assert PATIENT_LIKE[0] not in metrics and 'reason="unknown_device_kind"' in metrics
    # 20,000 rows in one event: 413, and /healthz answers meanwhile.
    flood = {"instances": [features] * 20_000}
    started = time.monotonic()
    big = post_event(site, "flood-1", REQUEST, "lens", "predictor", flood, logger)
    assert big.status_code == 413
    assert httpx.get(site.monitor + "/healthz", timeout=2).status_code == 200
    assert time.monotonic() - started < 5
    rows = {"instances": [features] * 300}
    assert post_event(site, "rows-1", REQUEST, "lens", "predictor", rows, logger).status_code == 413
    # Component and service names come from a fixed list, not from the client.
    assert post_event(site, "c-1", RESPONSE, "lens", "evil", {}, logger).status_code == 400
    assert post_event(site, "s-1", RESPONSE, "iris", "predictor", {}, logger).status_code == 403


def test_long_identifiers_are_refused_with_a_4xx_that_echoes_nothing(site: Site) -> None:
    device = site.token("device")
    body = {"instances": [{"image_b64": "iVBORw0KGgo=", "device_kind": "optical_biometer"}]}
    long_id = site.keep(httpx.post(site.ocr + "/v1/models/ocr:predict", json=body,
                                   headers={**device, "ce-id": "x" * 129}))  # fmt: skip
    assert long_id.status_code == 400 and "x" * 129 not in long_id.text
    huge_hint = {"instances": [{**body["instances"][0], "patient_id": PATIENT_LIKE[0] * 100_000}]}
    reply = site.keep(httpx.post(site.ocr + "/v1/models/ocr:predict", json=huge_hint, headers=device))
    assert reply.status_code == 400 and len(reply.content) < 1000
    v1_on_v2 = {"instances": [{"image_b64": "A" * 400_000, "device_kind": "optical_biometer"}]}
    reply = site.keep(httpx.post(site.ocr + "/v2/models/ocr/infer", json=v1_on_v2, headers=device))
    assert reply.status_code == 400 and len(reply.content) < 1000, reply.text[:300]
    v2_on_v1 = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["A" * 400_000]}]}
    reply = site.keep(httpx.post(site.ocr + "/v1/models/ocr:predict", json=v2_on_v1, headers=device))
    assert reply.status_code == 400 and len(reply.content) < 1000
    too_many = {"instances": [{"eye_id": f"{PATIENT_LIKE[0]}-OD"}] * 65}
    reply = site.keep(
        httpx.post(site.lens + "/v1/models/lens:predict", json=too_many, headers=site.token("client"))
    )
    assert reply.status_code == 413
    shape = {"inputs": [{"name": "eye_id", "shape": [5], "datatype": "BYTES", "data": [site.eye_ids[0]]}]}
    reply = site.keep(
        httpx.post(site.lens + "/v2/models/lens/infer", json=shape, headers=site.token("client"))
    )
    assert reply.status_code == 400
    as_bytes = {"inputs": [{"name": "eye_id", "shape": [1], "datatype": "BYTES", "data": [site.eye_ids[0]]}]}
    reply = httpx.post(site.lens + "/v2/models/lens/infer", json=as_bytes, headers=site.token("client"))
    assert reply.status_code == 200, reply.text


def test_zz_no_patient_identifier_in_any_error_body_or_log(site: Site) -> None:
    """Last in the module: everything above has been sent and logged by now."""
    assert len(site.error_bodies) > 5000
    leaks = [
        b[max(0, m.start() - 150) : m.end() + 30] for b in site.error_bodies if (m := PATIENT_ID.search(b))
    ]
    assert not leaks, leaks[:5]
    time.sleep(1.0)
    for log in sorted(site.logs.glob("*.log")):
        found = [
            line[:200] for line in log.read_text(errors="replace").splitlines() if PATIENT_ID.search(line)
        ]
        assert not found, (log.name, found[:5])
