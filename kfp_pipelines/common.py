"""What every eyeops pipeline shares: the component images, the models volume, the restricted
security context and the gate-and-register step.

Components are KFP v2 lightweight Python components. On a cluster they run in the pipeline image
(which has eyeops installed) or the detectors image, named without a registry host here: `eyeops
pipelines compile|run|schedule --image-registry` puts the chart's `imageRegistry` in front of them
(eyeops.pipelines.cli.with_image_registry). Every step that reads or writes the registry, a cohort
or the feature repository mounts the models PVC (`models_pvc`, the chart's eyeops-models) at
/mnt/eyeops, and every step runs as uid/gid 10001 like the chart's pods, so all of them write the
volume as the same user. Locally `kfp.local.SubprocessRunner(use_venv=False)` runs them in the
current environment and ignores the Kubernetes settings. (No `from __future__ import annotations`
here: KFP reads the real types.)
"""

from typing import Any

from kfp import dsl, kubernetes
from kfp.dsl import Input, Markdown, Model, Output

PIPELINE_IMAGE = "eyeops/pipelines:0.1.0"  # Dockerfile, target pipelines
DETECTORS_IMAGE = "eyeops/detectors:0.1.0"  # detectors/Dockerfile: alibi-detect, numpy<2
MODELS_MOUNT = "/mnt/eyeops"  # where the recurring runs' paths live (k8s/pipelines/recurring-runs.yaml)
MODELS_PVC = "eyeops-models"  # the chart's default claim (ReadWriteMany: pipelines, console, monitor)
RUN_AS = 10001  # the images' user and the chart's runAsUser/fsGroup


def restricted(task: Any) -> Any:
    """Run the step as the images' non-root user (Pod Security "restricted"; KFP adds the rest:
    no privilege escalation, all capabilities dropped, RuntimeDefault seccomp)."""
    kubernetes.set_security_context(task, run_as_user=RUN_AS, run_as_group=RUN_AS, run_as_non_root=True)
    return task


def on_models_volume(task: Any, models_pvc: Any) -> Any:
    """A step that reads or writes under /mnt/eyeops: mount the models PVC there, as that user."""
    kubernetes.mount_pvc(task, pvc_name=models_pvc, mount_path=MODELS_MOUNT)
    return restricted(task)


def _component(func):  # type: ignore[no-untyped-def]
    return dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)(func)


@_component
def gate_and_register(
    model: Input[Model],
    evaluation: str,
    registry_root: str,
    version: str,
    model_name: str,
    decision: Output[Markdown],
    registry_uri_prefix: str = "",
    inference_service: str = "",
    namespace: str = "",
    canary_percent: int = 100,
) -> bool:
    """Register the candidate; promote it only if its gate passes against the current champion. On a
    cluster (inference_service set) promotion also points that InferenceService at the new
    storageUri, as a canary when canary_percent < 100 and its KServe deployment mode (read from the
    live object) can honour one; where it cannot, the step fails before anything is registered."""
    import json
    from pathlib import Path

    from eyeops.pipelines.gates import register_through_gate
    from eyeops.registry import ModelRegistry
    from eyeops.registry.store import GateDecision

    registry = ModelRegistry(Path(registry_root), uri_prefix=registry_uri_prefix)
    rollout = None
    api = None

    def plan(verdict: GateDecision) -> None:  # refuses before anything is registered
        nonlocal api, rollout
        if verdict.promote and inference_service:
            from eyeops.registry.deploy import in_cluster_api, plan_rollout

            api = in_cluster_api()
            rollout = plan_rollout(api, inference_service, namespace, canary_percent)

    done = register_through_gate(
        registry, model_name, version, Path(model.path), json.loads(evaluation), before_register=plan
    )
    verdict, registered = done.verdict, done.version
    deployed = "not deployed (no InferenceService named)"
    if verdict.promote and rollout is not None and api is not None:
        from eyeops.registry.deploy import apply_rollout

        apply_rollout(api, rollout, registered.storage_uri)
        deployed = rollout.describe()
    lines = [
        f"# {model_name} {version}: {'PROMOTED' if verdict.promote else 'NOT promoted'}",
        "",
        f"champion before: {done.champion_before or 'none'}",
        f"storage URI: {registered.storage_uri}",
        f"rollout: {deployed if verdict.promote else 'none'}",
        "",
        *(f"- {r}" for r in verdict.reasons),
    ]
    with open(decision.path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return verdict.promote


def register_step(  # type: ignore[no-untyped-def]
    model,
    evaluation,
    model_name: str,
    registry_root,
    version,
    registry_uri_prefix,
    models_pvc,
    inference_service="",
    namespace="",
    canary_percent=100,
):
    """Every pipeline's last step: gate_and_register, never answered from a cache (it changes the
    registry and, on a cluster, the InferenceService)."""
    registered = gate_and_register(
        model=model,
        evaluation=evaluation,
        registry_root=registry_root,
        version=version,
        model_name=model_name,
        registry_uri_prefix=registry_uri_prefix,
        inference_service=inference_service,
        namespace=namespace,
        canary_percent=canary_percent,
    )
    registered.set_caching_options(False)
    return on_models_volume(registered, models_pvc)
