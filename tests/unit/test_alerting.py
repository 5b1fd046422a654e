"""The alert rules the chart ships: every alert tested, labelled and explained, and kept in step with the
metrics the OCR service exposes (promtool and amtool run them in tests/process/test_alerting.py)."""

from __future__ import annotations

import re

import yaml
from prometheus_client import CollectorRegistry

from eyeops.metrics import OcrMetrics
from eyeops.settings import repo_root

ALERTS = repo_root() / "charts" / "eyeops" / "files" / "alerts"


def rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((ALERTS / "rules.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_is_tested_labelled_and_explained() -> None:
    tested = (repo_root() / "tests" / "alerting" / "rules_test.yaml").read_text()
    for rule in rules():
        if "alert" not in rule:
            continue
        name = rule["alert"]
        assert f"alertname: {name}" in tested, f"{name} has no promtool test"
        labels, notes = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and isinstance(notes, dict)
        assert labels["severity"] in {"warning", "critical"} and labels["team"] in {"ml", "ops", "platform"}
        assert notes["summary"] and notes["description"]


def test_ocr_metrics_named_in_rules_exist() -> None:
    registry = CollectorRegistry()
    OcrMetrics(registry)
    exposed = {f.name + ("_total" if f.type == "counter" else "") for f in registry.collect()}
    named = set()
    for rule in rules():
        named |= set(re.findall(r"\beyeops_ocr_[a-z_]+_total\b", str(rule["expr"])))
    assert named and named <= exposed, named - exposed
