"""The chart's models: a first install seeds the versions the defaults point at, each overlay installs
on an empty cluster from what the seed Job registers, and an upgrade keeps the model a promotion
deployed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.unit.chart_helpers import CHART, EXAMPLES, PROD, render, values_of


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
