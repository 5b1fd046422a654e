"""The lens service as deployed: kserve.ModelServer processes for the predictor and the
transformer, with Feast between the eye id and the features, on SQLite and on a real Redis."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import redis

from eyeops.features import repository as fs
from eyeops.features.online import FeastOnlineStore
from eyeops.lens.cohort import simulate_cohort
from eyeops.lens.features import BASE_FEATURES
from eyeops.lens.model import LensConfig, LensModel
from eyeops.lens.sizes import SIZES_MM
from eyeops.stack.lens import LensStack

REDIS_DB = 12  # a database of its own on the machine's Redis, emptied before use


@dataclass
class Service:
    lens: str
    predictor: str
    eyes: pd.DataFrame
    stale_eye: str
    partial_eye: str
    logs: Path


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("lens")
    if request.param == "redis":
        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    model = LensModel.fit(simulate_cohort(3000, seed=41), LensConfig(vault_rounds=200), version="it-1")
    model.save(root / "model")
    eyes = simulate_cohort(30, seed=42)
    days = np.random.default_rng(1).integers(1, 200, len(eyes))
    eyes["exam_date"] = pd.Timestamp.now().normalize() - pd.to_timedelta(days, unit="D")
    stale = eyes.iloc[[0]].copy()
    stale["eye_id"] = "P9999990-OD"
    stale["exam_date"] = pd.Timestamp.now().normalize() - pd.Timedelta(days=1000)
    repo = fs.prepare_repo(root / "repo", request.param, f"127.0.0.1:6379,db={REDIS_DB}")
    fs.write_offline_data(pd.concat([eyes, stale], ignore_index=True), repo)
    store = fs.open_store(repo)
    fs.apply_and_materialize(store, repo)
    partial = eyes.iloc[1]
    values = {c: partial[c] for c in ("wtw_mm", "acd_mm", "al_mm", "lt_mm", "k1_d", "k2_d", "cct_um")}
    values["cct_um"] = int(values["cct_um"])
    # biometry only
    FeastOnlineStore(store).push("biometry", [("P9999991-OS", values, dt.datetime.now(dt.UTC))])
    with LensStack(root / "model", repo, root / "log") as endpoints:
        yield Service(endpoints.lens, endpoints.predictor, eyes, "P9999990-OD", "P9999991-OS", root / "log")


def post(url: str, body: dict) -> httpx.Response:
    return httpx.post(url, json=body, timeout=30)


def test_recommendation_for_an_eye_through_feast(service):
    eye = service.eyes["eye_id"].iloc[3]
    r = post(f"{service.lens}/v1/models/lens:predict", {"instances": [{"eye_id": eye}]})
    assert r.status_code == 200, r.text
    answer = r.json()["predictions"][0]
    assert answer["eye_id"] == eye and answer["model_version"] == "it-1"
    assert [s["size_mm"] for s in answer["sizes"]] == list(SIZES_MM)
    vaults = [s["vault_um"] for s in answer["sizes"]]
    assert vaults == sorted(vaults)
    assert answer["recommended_size_mm"] in [s["size_mm"] for s in answer["sizes"] if s["supported"]]
    assert answer["stale_feature_views"] == [] and set(answer["measured_at"]) >= {"biometry", "refraction"}
    for s in answer["sizes"]:
        assert s["lower_um"] <= s["upper_um"]
        assert (s["p_in_range"] is None) == (not s["supported"])
        assert (s["expected_abs_error_um"] is None) == (not s["supported"])  # the direct loss estimate


def test_the_servers_write_no_line_per_request_unless_asked(service):
    """Issue 32: uvicorn's access line and KServe's timing lines cost CPU on every request; they are
    written only with --access_log_format or --enable_latency_logging true."""
    eye = service.eyes["eye_id"].iloc[4]
    for _ in range(5):
        assert (
            post(f"{service.lens}/v1/models/lens:predict", {"instances": [{"eye_id": eye}]}).status_code
            == 200
        )
    logs = {path.name: path.read_text() for path in service.logs.glob("*.log")}
    assert {"lens-predictor.log", "lens-transformer.log"} <= set(logs), sorted(logs)
    for name, text in logs.items():
        assert "uvicorn.access" not in text and "HTTP/1.1" not in text and "requestId" not in text, name


def test_unknown_missing_and_stale_eyes(service):
    r = post(f"{service.lens}/v1/models/lens:predict", {"instances": [{"eye_id": "P0000000-OD"}]})
    assert r.status_code == 404 and "no features" in r.json()["error"]
    r = post(f"{service.lens}/v1/models/lens:predict", {"instances": [{"eye_id": service.partial_eye}]})
    assert r.status_code == 422 and "ata_mm" in r.json()["error"] and "anterior_segment" in r.json()["error"]
    r = post(f"{service.lens}/v1/models/lens:predict", {"instances": [{"eye_id": service.stale_eye}]})
    assert r.status_code == 200
    assert set(r.json()["predictions"][0]["stale_feature_views"]) >= {"biometry", "anterior_segment"}
    r = post(f"{service.lens}/v1/models/lens:predict", {"instances": [{"eye": "x"}]})
    assert r.status_code == 400


def test_predictor_direct_v1_v2_bad_input_and_explain(service):
    row = {c: float(service.eyes[c].iloc[5]) for c in BASE_FEATURES}
    url = f"{service.predictor}/v1/models/lens"
    ok = post(f"{url}:predict", {"instances": [row]})
    assert ok.status_code == 200
    nan_body = json.dumps({"instances": [{**row, "acd_mm": float("nan")}]})  # a NaN literal, as some send
    json_type = {"content-type": "application/json"}
    nan = httpx.post(f"{url}:predict", content=nan_body, headers=json_type, timeout=30)
    assert nan.status_code == 400
    assert post(f"{url}:predict", {"instances": [{**row, "acd_mm": "deep"}]}).status_code == 400
    implausible = post(f"{url}:predict", {"instances": [{**row, "acd_mm": 9.1}]})
    assert implausible.status_code == 422 and "acd_mm" in implausible.json()["error"]
    assert "2.0–4.5" in implausible.json()["error"]
    v2 = {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [v]} for c, v in row.items()]}
    r = post(f"{service.predictor}/v2/models/lens/infer", v2)
    assert r.status_code == 200
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert np.allclose(
        outputs["vault_um"]["data"], [s["vault_um"] for s in ok.json()["predictions"][0]["sizes"]], atol=0.1
    )
    ex = post(f"{url}:explain", {"instances": [row]})
    assert ex.status_code == 200
    explanation = ex.json()["explanations"][0]
    for size, contributions in explanation["contributions_um"].items():
        total = explanation["expected_value_um"] + sum(contributions.values())
        assert total == pytest.approx(explanation["vault_um"][size], abs=1e-6)
    rec = f"{explanation['recommended_size_mm']:.1f}"
    assert explanation["size_switch_um"][rec] == 0.0


def test_recommend_command_prints_and_plots(service, tmp_path, capsys):
    from eyeops.cli import main

    eye = service.eyes["eye_id"].iloc[7]
    assert (
        main(["lens", "recommend", eye, "--endpoint", service.lens, "--plot", str(tmp_path / "eye.png")]) == 0
    )
    out = capsys.readouterr().out
    assert f"{eye}: recommended" in out and out.count(" mm  vault ") == 4
    assert (tmp_path / "eye.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["recommend", "P0000000-OS", "--endpoint", service.lens]) == 1  # the top-level spelling
