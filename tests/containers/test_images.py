"""Every image, run hardened as the chart runs it (tests/containers/conftest.py), doing its job:

1. the seed Job's three steps (pipelines image: `eyeops registry seed`; detectors image: fit the
   detector set; pipelines image: register it) fill a models volume;
2. the Triton image serves the OCR version the seed registered (its folder mounted read-only, as
   KServe's storage initializer leaves it at /mnt/models);
3. the OCR transformer image reads a rendered exam through that Triton into PostgreSQL, and refuses a
   bad body with a 4xx;
4. the gateway image delivers an exported file to the transformer with its device token;
5. the lens predictor and transformer images answer an eye from Feast (Redis online store, registry
   in PostgreSQL: the cluster profile) with the seeded lens model;
6. the detectors image (the monitor) ingests a logged request and answer from the seeded detectors;
7. the pipelines image runs a compiled pipeline component exactly as KFP's launcher would;
8. the console image serves its sign-in page from PostgreSQL.

How each image is started (the chart's arguments, mounts and secrets) is in tests/containers/stack.py;
the fixtures here start each once for this module.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from eyeops.settings import repo_root
from tests.conftest import create_pg_database, drop_pg_database
from tests.containers.conftest import Container, Engine, free_ports, shared_dir, world_readable
from tests.containers.stack import (
    KIND,
    exam_rows,
    feature_repo,
    host,
    seed_models,
    start_lens,
    start_monitor,
    start_ocr,
    start_triton,
)
from tests.helpers import eventually

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("containers")


@pytest.fixture(scope="module")
def models(engine: Engine, volumes: Path) -> Path:
    """The seed Job, step by step, with the chart's mounts (stack.seed_models): the registry folder."""
    return seed_models(engine, volumes)


def test_the_seed_job_fills_the_models_volume(models: Path) -> None:
    for name in ("ocr", "lens", "detectors"):
        champion = json.loads((models / name / "champion.json").read_text())
        assert champion["champion"] == "seed", champion
    assert (models / "ocr" / "seed" / "trocr" / "config.pbtxt").exists()
    assert (models / "ocr" / "seed" / "ppocr" / "1" / "model.onnx").exists()  # the second recogniser
    assert (models / "lens" / "seed" / "manifest.json").exists()
    assert (models / "detectors" / "seed" / "manifest.json").exists()


@pytest.fixture(scope="module")
def triton(engine: Engine, models: Path) -> str:
    return start_triton(engine, models)


@pytest.fixture(scope="module")
def results_db() -> Iterator[str]:
    name, url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="module")
def ocr(engine: Engine, triton: str, results_db: str, volumes: Path) -> dict[str, Any]:
    return start_ocr(engine, triton, results_db, volumes)


def test_the_ocr_transformer_reads_an_exam_through_triton(ocr: dict[str, Any], results_db: str) -> None:
    import base64

    from eyeops.devices import load_layouts
    from eyeops.synth.exams import render_one

    exam = render_one(load_layouts()[KIND], 31, "eval", 0)
    auth = {"authorization": f"Bearer {ocr['token']}"}
    body = {"instances": [{"image_b64": base64.b64encode(exam.image).decode(), "device_kind": KIND}]}
    reply = httpx.post(f"{ocr['url']}/v1/models/ocr:predict", json=body, headers=auth, timeout=120)
    assert reply.status_code == 200, reply.text[:500]
    answer = reply.json()["predictions"][0]
    read = {f["name"]: f["raw_text"] for f in answer["fields"]}
    right = sum(read.get(name) == text for name, text in exam.texts.items())
    assert right >= len(exam.texts) - 1, (read, exam.texts)
    assert answer["device_id"] == "iolm-7"  # bound by the device's token
    assert [r[0] for r in exam_rows(results_db)] == [answer["exam_id"]]
    refused = httpx.post(
        f"{ocr['url']}/v1/models/ocr:predict", json={"instances": [{}]}, headers=auth, timeout=30
    )
    assert 400 <= refused.status_code < 500, refused.text
    assert "image" in refused.json()["error"]
    anonymous = httpx.post(f"{ocr['url']}/v1/models/ocr:predict", json=body, timeout=30)
    assert anonymous.status_code == 401


def test_the_gateway_delivers_an_exported_file(
    engine: Engine, ocr: dict[str, Any], results_db: str, volumes: Path
) -> None:
    from eyeops.devices import load_layouts
    from eyeops.imageio import file_extension
    from eyeops.synth.exams import render_one

    exports, state = shared_dir(volumes / "exports"), shared_dir(volumes / "gateway-state")
    before = len(exam_rows(results_db))
    gateway = engine.run(
        "gateway",
        [
            "watch",
            "/exports",
            "--device-kind",
            KIND,
            "--device-id",
            "iolm-7",
            "--endpoint",
            ocr["url"],
            "--token-file",
            "/etc/eyeops/gateway/iolm-7.token",
            "--state-dir",
            "/var/lib/eyeops-gateway",
            "--rescan-interval",
            "1",
            "--settle",
            "0.5",
        ],
        name="gateway",
        mounts=[
            (exports, "/exports", True),
            (state, "/var/lib/eyeops-gateway", False),
            (ocr["tokens"], "/etc/eyeops/gateway", True),
        ],
    )
    assert isinstance(gateway, Container)
    exam = render_one(load_layouts()[KIND], 32, "eval", 1)
    name = f"exam-2.{file_extension(exam.image)}"  # a device exports PNG, JPEG or TIFF
    (exports / f"{name}.part").write_bytes(exam.image)
    os.replace(exports / f"{name}.part", exports / name)  # as devices export: write, then rename
    os.chmod(exports / name, 0o644)
    try:
        rows = eventually(
            lambda: len(exam_rows(results_db)) > before and exam_rows(results_db), 120, "delivered exam"
        )
    except BaseException:
        print(gateway.logs())
        raise
    assert len(rows) == before + 1
    assert all(r[1] == "iolm-7" for r in rows)


@pytest.fixture(scope="module")
def feast_repo(volumes: Path) -> Iterator[tuple[Path, str]]:
    """The cluster profile: Redis online store, registry and offline store in PostgreSQL."""
    with feature_repo(volumes) as repo:
        yield repo


@pytest.fixture(scope="module")
def lens(engine: Engine, models: Path, feast_repo: tuple[Path, str], volumes: Path) -> dict[str, str]:
    """The lens predictor and transformer images as the chart runs them, with the seeded model."""
    return start_lens(engine, models, feast_repo, volumes)


def test_the_lens_images_answer_an_eye_from_feast(lens: dict[str, str]) -> None:
    t_url, client, eye = lens["url"], lens["token"], lens["eye"]
    reply = httpx.post(
        f"{t_url}/v1/models/lens:predict",
        json={"instances": [{"eye_id": eye}]},
        headers={"authorization": f"Bearer {client}"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text[:500]
    answer = reply.json()["predictions"][0]
    assert answer["eye_id"] == eye
    assert sorted(s["size_mm"] for s in answer["sizes"]) == [12.1, 12.6, 13.2, 13.7]
    assert answer["recommended_size_mm"] in (12.1, 12.6, 13.2, 13.7, None)
    unknown = httpx.post(
        f"{t_url}/v1/models/lens:predict",
        json={"instances": [{"eye_id": "nobody-OD"}]},
        headers={"authorization": f"Bearer {client}"},
        timeout=60,
    )
    assert unknown.status_code == 404, unknown.text


@pytest.fixture(scope="module")
def monitor(engine: Engine, models: Path, volumes: Path) -> dict[str, int]:
    """The monitor (detectors image) as the chart runs it, with the seeded detector set."""
    return start_monitor(engine, models, volumes)


def test_the_monitor_ingests_logged_events_with_the_seeded_detectors(monitor: dict[str, int]) -> None:
    port, sink_port = monitor["port"], monitor["sink_port"]
    base = {
        "ce-specversion": "1.0",
        "ce-source": "http://lens-predictor/",
        "ce-inferenceservicename": "lens",
        "ce-component": "predictor",
        "ce-namespace": "eyeops",
        "content-type": "application/json",
    }
    from eyeops.lens.cohort import simulate_cohort
    from eyeops.lens.features import FEATURES, derive_features

    cohort = simulate_cohort(2, seed=8)
    eye = cohort.join(derive_features(cohort)).iloc[0]
    request = {"instances": [{"eye_id": "P1-OD", **{f: float(eye[f]) for f in FEATURES}}]}
    sizes = [
        {"size_mm": s, "vault_um": v, "lower_um": v - 200, "upper_um": v + 200}
        for s, v in ((12.1, 300.0), (12.6, 450.0), (13.2, 600.0), (13.7, 750.0))
    ]
    url = f"http://127.0.0.1:{sink_port}/"
    refused = httpx.post(  # the operator port takes no events
        f"http://127.0.0.1:{port}/",
        headers={**base, "ce-id": "c0", "ce-type": "org.kubeflow.serving.inference.request"},
        content=json.dumps(request),
        timeout=30,
    )
    assert refused.status_code == 404, refused.text
    first = httpx.post(
        url,
        headers={**base, "ce-id": "c1", "ce-type": "org.kubeflow.serving.inference.request"},
        content=json.dumps(request),
        timeout=30,
    )
    second = httpx.post(
        url,
        headers={**base, "ce-id": "c1", "ce-type": "org.kubeflow.serving.inference.response"},
        content=json.dumps({"predictions": [{"sizes": sizes, "recommended_size_mm": 12.6}]}),
        timeout=30,
    )
    assert first.status_code == 202, first.text
    assert second.status_code in (200, 202), second.text
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'eyeops_monitor_events_total{component="predictor",service="lens",type="request"} 1.0' in metrics
    assert "eyeops_monitor_waiting_for_detectors 0.0" in metrics  # the seeded set was loaded


def test_helm_tests_probe_runs_in_its_image_against_what_the_images_serve(
    engine: Engine, ocr: dict[str, Any], lens: dict[str, str], monitor: dict[str, int]
) -> None:
    """`helm test`'s Pod as the chart renders it for the production overlay in Standard mode (its
    image, command and arguments), run here with each Service's host mapped to the container that
    serves it: the paths it probes are the ones the images answer ready on (issue 30)."""
    from tests.unit.test_chart import PROD, render, values_of

    values = values_of(PROD)
    values["kserve"] = {**values.get("kserve", {}), "deploymentMode": "Standard"}
    values["feast"] = {**values.get("feast", {}), "server": {"enabled": False}}  # no Feast server here
    (pod,) = [
        o for o in render(values) if o["kind"] == "Pod" and o["metadata"]["name"].endswith("-test-ready")
    ]
    (container,) = pod["spec"]["containers"]
    served = {
        "clinic-eyeops-monitor": f"127.0.0.1:{monitor['port']}",
        "ocr-transformer": ocr["url"].removeprefix("http://"),
        "lens-transformer": lens["url"].removeprefix("http://"),
    }
    args = []
    for url in container["args"]:
        scheme, _, rest = url.partition("://")
        address, _, path = rest.partition("/")
        service = address.split(".")[0]
        assert service in served, f"helm test probes {service}, which this tier does not run"
        args.append(f"{scheme}://{served[service]}/{path}")
    assert len(args) == 3  # the monitor and both InferenceServices
    image = container["image"].split("/")[-1].split(":")[0]  # eyeops/lens:0.1.0 -> lens
    command, *head = container["command"]
    done = engine.run(image, [*head, *args], name="helm-test", entrypoint=command, detach=False)
    assert not isinstance(done, Container)
    assert done.stdout.count("ready: ") == 3, done.stdout + done.stderr


def test_the_pipelines_image_runs_a_compiled_component(engine: Engine, volumes: Path) -> None:
    """validate-cohort-file from the compiled lens-training pipeline, with the container's command
    and arguments as KFP's launcher runs them (the executor input filled in)."""
    cohort_dir, out = shared_dir(volumes / "cohort"), shared_dir(volumes / "artifacts")
    host("synth", "cohort", "--n", "300", "--seed", "5", "--out", str(cohort_dir / "cohort.parquet"))
    world_readable(cohort_dir)
    compiled = (repo_root() / "kfp_pipelines" / "compiled" / "lens-training.yaml").read_text()
    spec = next(yaml.safe_load_all(compiled))  # the pipeline spec; the platform spec follows
    container = spec["deploymentSpec"]["executors"]["exec-validate-cohort-file"]["container"]
    executor_input = {
        "inputs": {
            "parameterValues": {
                "cohort_uri": "/mnt/in/cohort.parquet",
                "date_format": "",
                "max_quarantined": 0.01,
                "inputs_sha256": "",
            }
        },
        "outputs": {
            "artifacts": {
                name: {
                    "artifacts": [
                        {
                            "name": name,
                            "type": {"schemaTitle": kind, "schemaVersion": "0.0.1"},
                            "uri": f"/mnt/out/{name}",
                            "metadata": {},
                        }
                    ]
                }
                for name, kind in (("validated", "system.Dataset"), ("report", "system.Markdown"))
            },
            "outputFile": "/mnt/out/executor_output.json",
        },
    }
    args = [a.replace("{{$}}", json.dumps(executor_input)) for a in container["args"]]
    command = container["command"]
    engine.run(
        "pipelines",
        [*command[1:], *args],
        name="component",
        entrypoint=command[0],
        detach=False,
        mounts=[(cohort_dir, "/mnt/in", True), (out, "/mnt/out", False)],
    )
    validated = pd.read_parquet(out / "validated")
    assert len(validated) >= 297  # at most 1 % quarantined
    assert "Cohort validation" in (out / "report").read_text()
    output = json.loads((out / "executor_output.json").read_text())
    assert output["artifacts"]["validated"]["artifacts"][0]["metadata"]["rows"] == len(validated)


def test_the_console_serves_its_sign_in_page(engine: Engine, results_db: str, volumes: Path) -> None:
    secrets = shared_dir(volumes / "console")
    (secrets / "password").write_text("a long enough passphrase\n")
    host(
        "console",
        "users",
        "add",
        "ana",
        "--role",
        "reviewer",
        "--users-file",
        str(secrets / "users"),
        "--password-file",
        str(secrets / "password"),
    )
    (secrets / "session.key").write_text(os.urandom(32).hex())
    world_readable(secrets)
    pvc = shared_dir(volumes / "console-pvc")
    (port,) = free_ports(1)
    engine.started(
        "console",
        [
            "--database-url",
            results_db,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--users-file",
            "/etc/eyeops/console/users",
            "--session-secret-file",
            "/etc/eyeops/console/session.key",
            "--crops-dir",
            "/mnt/eyeops/crops",
            "--layouts-dir",
            "/mnt/eyeops/layouts",
        ],
        f"http://127.0.0.1:{port}/readyz",
        name="console",
        mounts=[(secrets, "/etc/eyeops/console", True), (pvc, "/mnt/eyeops", False)],
    )
    page = httpx.get(f"http://127.0.0.1:{port}/login", timeout=10)
    assert page.status_code == 200 and "csrf" in page.text.lower()
    started = time.monotonic()
    queue = httpx.get(f"http://127.0.0.1:{port}/", timeout=10, follow_redirects=False)
    assert queue.status_code in (302, 303) and "/login" in queue.headers["location"]
    assert time.monotonic() - started < 10


LOCKS = {
    "ocr-transformer": "main",
    "lens": "main",
    "console": "main",
    "pipelines": "main",
    "gateway": "main",
    "triton": "triton",
    "detectors": "detectors",
}


@pytest.mark.parametrize("image", sorted(LOCKS))
def test_every_image_has_an_sbom_and_ships_the_locked_versions(engine: Engine, image: str) -> None:
    """scripts/images.sh's CycloneDX SBOM, read from inside the image: every Python package the
    lock names is at the lock's version (what the tests ran with), and Debian's packages are listed."""
    sbom = json.loads((repo_root() / "build" / "images" / "sbom" / f"{image}.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
    assert sbom["metadata"]["component"]["name"].startswith(f"eyeops/{image}:")
    python = {
        c["name"].lower().replace("_", "-"): c["version"]
        for c in sbom["components"]
        if c["purl"].startswith("pkg:pypi/")
    }
    debian = [c for c in sbom["components"] if c["purl"].startswith("pkg:deb/debian/")]
    assert any(c["name"] == "libc6" for c in debian)
    lock = repo_root() / "images" / f"constraints-{LOCKS[image]}.txt"
    pins = dict(
        line.strip().lower().replace("_", "-").split("==", 1)
        for line in lock.read_text().splitlines()
        if "==" in line
    )
    shipped = {name: version for name, version in python.items() if name in pins}
    assert shipped, f"no locked package found in {image}"
    assert {n: v for n, v in shipped.items() if pins[n] != v} == {}
    if image in ("ocr-transformer", "lens", "console", "pipelines", "triton"):
        assert python.get("torch", "").startswith("2.13.0")
    if image == "gateway":
        assert "torch" not in python and "kserve" not in python  # the slim gateway
