"""`eyeops devices finetune`: from an onboarded kind to a registered, gated recogniser in one
command, within its budget; kinds it cannot fine-tune for and budgets too small are refused first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eyeops.cli import main
from eyeops.devices.onboard import onboard
from tests.foreign.render import render_set

DEVICE_YAML = Path(__file__).parents[1] / "foreign" / "lensmeter.yaml"


@pytest.fixture
def onboarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    layouts = tmp_path / "device"
    layouts.mkdir()
    (layouts / "lensmeter.yaml").write_text(DEVICE_YAML.read_text())
    sample = tmp_path / "sample"
    render_set(
        sample,
        1,
        777,
        "none",
        True,
        layout_dirs=[layouts],
        kinds=["lensmeter"],
        fixed_design=True,
        page_scale=1.0,
    )
    done = onboard(
        "lensmeter", next(sample.glob("*.png")), layouts / "lensmeter.yaml", tmp_path / "onboarded"
    )
    monkeypatch.setenv("EYEOPS_LAYOUT_DIRS", str(done.layout.parent))
    monkeypatch.setenv("EYEOPS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_one_command_fine_tunes_an_onboarded_kind_and_registers_it_through_the_gate(onboarded, capsys):
    registry = onboarded / "registry"
    tiny = ["--exams", "6", "--replay-exams", "6", "--steps", "4", "--eval-exams", "3"]
    args = ["devices", "finetune", "lensmeter", "--budget-minutes", "8", "--replay-eval-exams", "6"]
    assert main([*args, *tiny, "--registry", str(registry), "--out", str(onboarded / "ckpt")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "lensmeter" and out["training"]["steps"] == 4
    per_kind = out["per_device_champion_then_candidate"]
    assert "lensmeter" in per_kind and len(per_kind) >= 2  # the new kind and the kinds replayed
    for before, after in per_kind["lensmeter"].values():
        assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    assert out["minutes"]["total"] < 8
    registered = out["registered"]
    assert registered["version"].startswith("lensmeter-") and registered["gate"]
    record = json.loads((registry / "ocr" / registered["version"] / "registry.json").read_text())
    assert record["gate_promoted"] == registered["promoted"]
    assert (registry / "ocr" / registered["version"] / "trocr" / "1" / "checkpoint" / "config.json").is_file()
    meta = json.loads((onboarded / "ckpt" / "eyeops_model.json").read_text())
    assert meta["parents"][0]["version"] and "lensmeter" in meta["note"]
    assert meta["command"].startswith("eyeops devices finetune lensmeter")


def test_a_kind_without_reference_and_a_budget_too_small_are_refused_before_any_work(onboarded, capsys):
    assert main(["devices", "finetune", "optical_biometer", "--no-register"]) == 2
    err = capsys.readouterr().err
    assert "reference" in err and "onboard" in err and len(err.strip().splitlines()) == 1
    assert main(["devices", "finetune", "lensmeter", "--budget-minutes", "0.5", "--no-register"]) == 2
    err = capsys.readouterr().err
    assert "budget" in err and len(err.strip().splitlines()) == 1
    assert not (onboarded / "data" / "finetune").exists()


def test_the_consoles_devices_page_runs_the_real_command_to_a_registered_version(onboarded, tmp_path):  # type: ignore[no-untyped-def]
    """The Devices page's button starts `eyeops devices finetune` itself (eyeops.devices.finetune_jobs)
    and shows the gate's verdict once the version is registered."""
    import os
    import re
    import sys

    from fastapi.testclient import TestClient

    from eyeops.console.app import ConsoleConfig, create_app
    from eyeops.console.users import Sessions, add_user, load_users
    from eyeops.db.review import ReviewStore
    from eyeops.db.store import ResultsStore, migrate
    from eyeops.devices.finetune_jobs import FinetuneJobs, finetune_argv
    from eyeops.devices.layout import load_layouts

    registry = onboarded / "registry"
    tiny = ["--exams", "6", "--replay-exams", "6", "--steps", "4", "--eval-exams", "3"]
    options = ["--budget-minutes", "8", "--replay-eval-exams", "6", *tiny]
    jobs = FinetuneJobs(
        tmp_path / "jobs",
        finetune_argv(sys.executable, registry, options),
        env={"EYEOPS_LAYOUT_DIRS": os.environ["EYEOPS_LAYOUT_DIRS"]},
    )
    url = f"sqlite:///{tmp_path / 'results.db'}"
    migrate(url)
    users = tmp_path / "users.txt"
    add_user(users, "dev", ["device_admin"], "correct horse battery")
    config = ConsoleConfig(Sessions(b"s" * 48), users=load_users(users), finetunes=jobs)
    app = create_app(ReviewStore(ResultsStore.from_url(url).engine), load_layouts, config)
    with TestClient(app) as client:
        login = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', login)
        assert csrf is not None
        client.post(
            "/login", data={"user": "dev", "password": "correct horse battery", "csrf": csrf.group(1)}
        )
        page = client.get("/devices").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None and 'data-kind="lensmeter"' in page
        assert client.post("/devices/lensmeter/finetune", data={"csrf": csrf.group(1)}).status_code == 200
        job = jobs.wait("lensmeter", 600)
        assert job.state in ("promoted", "kept out by the gate"), (job.state, job.message)
        assert job.version and (registry / "ocr" / job.version / "registry.json").is_file()
        record = json.loads((registry / "ocr" / job.version / "registry.json").read_text())
        assert record["gate_promoted"] == (job.state == "promoted")
        assert f"<strong>{job.state}</strong> (ocr {job.version})" in client.get("/devices").text
