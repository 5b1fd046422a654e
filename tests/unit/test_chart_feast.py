"""The chart's feature store: the Feast server and jobs run the Feast CLI on the cluster profile,
feature_store.yaml comes from the values, a change to it rolls the pods that read it, and the server
is off unless someone may call it."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
import yaml

from eyeops.resources import feature_repo_template
from tests.unit.chart_helpers import PROD, kserve_containers, pod_specs, pods, render, values_of


def test_feast_server_and_jobs_run_the_feast_cli_on_the_cluster_profile() -> None:
    import click
    from feast.cli.cli import cli

    objects = render(values_of(PROD))
    by_component = {w["metadata"]["labels"]["app.kubernetes.io/component"]: t for w, t in pods(objects)}
    commands = {}
    for component in ("feast", "feast-apply", "feast-materialize"):
        container = by_component[component]["spec"]["containers"][0]
        env = {e["name"] for e in container["env"]}
        assert {"EYEOPS_FEAST_REGISTRY_URL", "EYEOPS_FEAST_REDIS", "EYEOPS_FEAST_PG_PASSWORD"} <= env
        argv = container["command"] + container.get("args", [])
        if argv[:2] == ["sh", "-c"]:  # the shell supplies the timestamp
            argv = (
                argv[2]
                .removeprefix("exec ")
                .replace('"$(date -u +%Y-%m-%dT%H:%M:%S)"', "2026-11-21T00:00:00")
                .split()
            )
        assert argv[0] == "feast"
        with cli.make_context("feast", argv[1:], resilient_parsing=False) as ctx:
            sub = cli.get_command(ctx, ctx.protected_args[0] if ctx.protected_args else ctx.args[0])
            assert isinstance(sub, click.Command)
            rest = (ctx.protected_args + ctx.args)[1:]
            sub.make_context(sub.name, rest)  # raises on an argument the real CLI does not take
            commands[component] = sub.name
    assert commands == {
        "feast": "serve",
        "feast-apply": "apply",
        "feast-materialize": "materialize-incremental",
    }
    apply_job = next(o for o in objects if o["kind"] == "Job")
    assert apply_job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert any(o["kind"] == "PodDisruptionBudget" for o in objects)  # two feature servers
    single = render(
        {
            **values_of(PROD),
            "feast": {"enabled": True, "secret": "s", "server": {"replicas": 1}},
        }
    )
    assert not any(
        o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"].endswith("-feast") for o in single
    )
    with pytest.raises(helm_python.HelmRenderError, match=r"feast\.secret"):
        render({"feast": {"enabled": True}, "networkPolicy": {"databaseCIDRs": ["10.20.0.0/16"]}})


def test_feature_store_yaml_comes_from_values_and_matches_the_repository_profile() -> None:
    objects = render(values_of(PROD))
    config = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("feature-store")
    )
    shipped = yaml.safe_load(config["data"]["feature_store.yaml"])
    assert shipped == yaml.safe_load((feature_repo_template() / "feature_store.cluster.yaml").read_text())
    mounted = [
        name
        for name, spec, c in kserve_containers(objects)
        + [(w["metadata"]["name"], t["spec"], t["spec"]["containers"][0]) for w, t in pods(objects)]
        if any(m.get("subPath") == "feature_store.yaml" for m in c.get("volumeMounts", []))
    ]
    assert "lens/transformer" in mounted and "ocr/transformer" in mounted
    assert sum(n.startswith("clinic-eyeops-feast") for n in mounted) == 3  # server, apply, materialize


def test_a_changed_feature_store_config_rolls_the_pods_that_read_it() -> None:
    """feature_store.yaml is mounted with subPath, which never updates in place: the transformers
    and the feature server carry its checksum, so a change restarts them (and only them)."""

    def checksums(values: dict[str, Any]) -> dict[str, str | None]:
        return {
            name: meta["annotations"].get("eyeops.io/feature-store")
            for name, (meta, _) in pod_specs(render(values)).items()
            if name in ("ocr-transformer", "lens-transformer", "ocr-predictor", "clinic-eyeops-feast")
        }

    values = values_of(PROD)
    before = checksums(values)
    assert (
        before["ocr-predictor"] is None
        and len({before["lens-transformer"], before["clinic-eyeops-feast"]}) == 1
    )
    values["feast"]["featureStore"] = {**values.get("feast", {}).get("featureStore", {}), "project": "other"}
    after = checksums(values)
    for name in ("ocr-transformer", "lens-transformer", "clinic-eyeops-feast"):
        assert after[name] and after[name] != before[name], name


def test_the_feature_server_is_off_unless_someone_may_call_it_and_can_check_their_tokens() -> None:
    """Issue 30, item 8: by default no namespace may call Feast's server, so it is not installed
    (nor its cluster-wide TokenReview binding); switched on with kubernetes auth, the API server's
    addresses are required, or the NetworkPolicy would block the TokenReview every call needs."""
    values = values_of(PROD)
    values["feast"]["server"] = {"enabled": False}
    objects = render(values)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Deployment", "clinic-eyeops-feast") not in names
    assert not any(kind == "ClusterRoleBinding" for kind, _ in names)
    assert ("Job", "clinic-eyeops-feast-apply") in names and (
        "CronJob",
        "clinic-eyeops-feast-materialize",
    ) in names
    assert ("NetworkPolicy", "clinic-eyeops-feast-jobs") in names and (
        "NetworkPolicy",
        "clinic-eyeops-feast",
    ) not in names
    values["feast"]["server"] = {"enabled": True}
    values["networkPolicy"]["apiServerCIDRs"] = []
    with pytest.raises(helm_python.HelmRenderError, match=r"networkPolicy\.apiServerCIDRs"):
        render(values)
    values["feast"]["server"]["auth"] = "none"
    assert not any(o["kind"] == "ClusterRoleBinding" for o in render(values))
