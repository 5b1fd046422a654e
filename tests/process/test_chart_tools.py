"""The Helm chart checked by the tools that read what it renders: promtool on the rules and on the
dashboards' queries (kube-prometheus-stack finds the rule and every monitor), and the monitor's args
parsed by its entrypoint's own parser in the detectors' environment."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from eyeops.settings import repo_root
from tests.unit.chart_helpers import CHART, EXAMPLES, PROD, render, values_of


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


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=["defaults", *(p.parent.name for p in EXAMPLES)])
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
