"""The alert rules and Alertmanager routes the chart ships: checked and unit-tested by Prometheus's
own promtool and Alertmanager's amtool (Debian packages installed by scripts/setup.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from eyeops.settings import repo_root
from tests.unit.test_alerting import ALERTS


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed; run: bash scripts/setup.sh"
    return found


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    """stdout of a successful run (the tools print warnings on stderr)."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_rules_parse_and_fire_on_synthetic_series() -> None:
    assert "SUCCESS: 21 rules found" in run(tool("promtool"), "check", "rules", ALERTS / "rules.yaml")
    out = run(tool("promtool"), "test", "rules", "rules_test.yaml", cwd=repo_root() / "tests" / "alerting")
    assert "SUCCESS" in out


def test_alertmanager_routes_critical_to_slack_and_email_and_warnings_by_team() -> None:
    config = ALERTS / "alertmanager.yaml"
    run(tool("amtool"), "check-config", config)

    def route(*labels: str) -> str:
        return run(tool("amtool"), "config", "routes", "test", f"--config.file={config}", *labels).split()[-1]

    assert route("severity=critical", "team=ml", "alertname=EyeopsLensCoverageLow") == "critical"
    assert route("severity=warning", "team=ops", "alertname=EyeopsOcrReviewRateHigh") == "slack-ops"
    assert route("severity=warning", "team=platform") == "slack-platform"
    assert route("severity=warning", "team=ml", "alertname=EyeopsLensFeatureDrift") == "slack-ml"
    receivers = {r["name"]: r for r in yaml.safe_load(config.read_text())["receivers"]}
    assert receivers["critical"]["email_configs"] and receivers["critical"]["slack_configs"]
    assert all("api_url" not in c for r in receivers.values() for c in r.get("slack_configs", []))
