"""The chart's credentials: every server authenticates its callers, the service credentials the chart
makes and every pod that reads them roll together, an existing Secret makes renders repeatable, and
`eyeops chart credentials` writes what the chart would make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.unit.chart_helpers import PROD, kserve_containers, pods, render, values_of


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
