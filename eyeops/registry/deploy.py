"""Promotion on a cluster: point an InferenceService's predictor at the new champion's storageUri,
as a canary where KServe's deployment mode can honour one.

What KServe 0.21 rolls out gradually, by mode (read from its code, not its older docs):

- Knative (formerly called Serverless): `spec.predictor.canaryTrafficPercent` (component.go,
  ComponentExtensionSpec). The Knative Service reconciler (reconcilers/knative/ksvc_reconciler.go)
  splits the predictor's traffic between the latest revision (the new storageUri) and the last
  rolled-out one. The transformer calls the predictor through Knative's route, so the split holds
  behind the transformer too.
- Standard (RawDeployment): `canaryTrafficPercent` is read by no Standard reconciler; it is ignored.
  0.20 added `spec.canary` (a list of CanarySpec: a named predictor and a trafficPercent; only in
  Standard mode, inference_service_validation.go), each canary its own Deployment and Service
  `{isvc}-{name}-predictor`. Traffic is split only by weights on the Gateway API HTTPRoute of the
  predictor (httproute_reconciler.go, applyCanaryWeights), and KServe gives the transformer the stable
  predictor's Service as its `--predictor_host` (components/transformer.go). Both our
  InferenceServices put a transformer in front of the predictor, so a canary there would receive
  none of the transformer's traffic: Standard mode cannot honour a canary share for them.

So the mode is read from the live InferenceService at promotion time (it cannot disagree with what
KServe runs), and a share below 100 % is refused in a mode that cannot honour it, before anything
is registered or patched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eyeops.registry.store import RegistryError

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
STANDARD = "Standard"
KNATIVE = "Knative"
LEGACY_MODES = {"RawDeployment": STANDARD, "Serverless": KNATIVE}  # KServe's own normalisation


class CustomObjects(Protocol):
    """The part of kubernetes.client.CustomObjectsApi promotion uses (injected; faked in tests)."""

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Any: ...

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any
    ) -> Any: ...


class RolloutRefused(RegistryError):
    """A rollout the InferenceService's deployment mode cannot carry out as asked."""


@dataclass(frozen=True)
class Rollout:
    """How a promotion reaches an InferenceService: its mode and the share of traffic asked for."""

    name: str
    namespace: str
    mode: str | None  # None: the InferenceService does not say (the cluster's default applies)
    canary_percent: int

    def describe(self) -> str:
        where = f"InferenceService {self.namespace}/{self.name} ({self.mode or 'cluster default'} mode)"
        if self.mode == KNATIVE and self.canary_percent < 100:
            return f"{where}: canary, {self.canary_percent}% of traffic to the new revision"
        return f"{where}: all traffic, as a rolling update"


def deployment_mode(isvc: dict[str, Any]) -> str | None:
    """The mode KServe runs `isvc` in: what the controller recorded in status.deploymentMode, else
    the annotation (legacy names normalised as KServe does); None when neither says."""
    recorded = (isvc.get("status") or {}).get("deploymentMode")
    annotated = ((isvc.get("metadata") or {}).get("annotations") or {}).get(MODE_ANNOTATION)
    mode = recorded or annotated
    return None if not mode else LEGACY_MODES.get(str(mode), str(mode))


def check_rollout(name: str, namespace: str, mode: str | None, canary_percent: int) -> Rollout:
    """A rollout of `canary_percent` % the mode can honour, or RolloutRefused saying what to do."""
    if not 0 < canary_percent <= 100:
        raise RegistryError(f"canary percentage must be 1–100, got {canary_percent}")
    rollout = Rollout(name, namespace, mode, canary_percent)
    if canary_percent == 100 or mode == KNATIVE:
        return rollout
    if mode == STANDARD:
        raise RolloutRefused(
            f"InferenceService {namespace}/{name} runs in KServe's Standard mode, which cannot send "
            f"{canary_percent}% of its traffic to a new model: canaryTrafficPercent works only in "
            "Knative mode, and Standard mode's spec.canary splits traffic only at the Gateway API route "
            "in front of a predictor, which this InferenceService's transformer does not use. Nothing "
            "was registered or deployed. Promote with canary_percent=100 (a rolling update of the "
            "predictor), or install with kserve.deploymentMode=Knative to roll out as a canary."
        )
    if mode is None:
        raise RolloutRefused(
            f"InferenceService {namespace}/{name} does not state its deployment mode (annotation "
            f"{MODE_ANNOTATION}), so the cluster's default applies, which promotion cannot see; a "
            f"{canary_percent}% canary works only in Knative mode. Nothing was registered or deployed. "
            "Install it with the chart (kserve.deploymentMode), or promote with canary_percent=100."
        )
    raise RolloutRefused(
        f"InferenceService {namespace}/{name} runs in KServe's {mode} mode; promotion knows Standard "
        "and Knative only. Nothing was registered or deployed."
    )


def rollout_patch(rollout: Rollout, storage_uri: str) -> dict[str, Any]:
    """A merge patch for `spec.predictor`: the model's storageUri and, in Knative mode, the share of
    traffic the new revision gets (100 ends a canary)."""
    if "://" not in storage_uri:
        raise RegistryError(f"{storage_uri!r} is not a storage URI (pvc://, s3://, gs://, file://, ...)")
    predictor: dict[str, Any] = {"model": {"storageUri": storage_uri}}
    if rollout.mode == KNATIVE:
        predictor["canaryTrafficPercent"] = rollout.canary_percent
    return {"spec": {"predictor": predictor}}


def plan_rollout(api: CustomObjects, name: str, namespace: str, canary_percent: int = 100) -> Rollout:
    """Read the live InferenceService and check that its mode can roll out `canary_percent` %."""
    isvc = api.get_namespaced_custom_object(
        KSERVE_GROUP, KSERVE_VERSION, namespace, "inferenceservices", name
    )
    return check_rollout(name, namespace, deployment_mode(dict(isvc)), canary_percent)


def apply_rollout(api: CustomObjects, rollout: Rollout, storage_uri: str) -> dict[str, Any]:
    patch = rollout_patch(rollout, storage_uri)
    api.patch_namespaced_custom_object(
        KSERVE_GROUP, KSERVE_VERSION, rollout.namespace, "inferenceservices", rollout.name, patch
    )
    return patch


def promote_inference_service(
    api: CustomObjects, name: str, namespace: str, storage_uri: str, canary_percent: int = 100
) -> dict[str, Any]:
    """plan_rollout then apply_rollout: point `name` at `storage_uri` in the way its mode allows."""
    return apply_rollout(api, plan_rollout(api, name, namespace, canary_percent), storage_uri)


@dataclass(frozen=True)
class CanaryState:
    """Where a Knative-mode InferenceService's predictor traffic goes now (from its spec and status)."""

    name: str
    namespace: str
    mode: str | None
    storage_uri: str | None
    canary_percent: int | None  # spec.predictor.canaryTrafficPercent; None: not set (all traffic)
    traffic: tuple[tuple[str, int], ...]  # (revision, percent) as the controller reports them
    latest_rolled_out: str | None
    previous_rolled_out: str | None

    def describe(self) -> str:
        share = "not set (100)" if self.canary_percent is None else self.canary_percent
        latest, previous = self.latest_rolled_out or "-", self.previous_rolled_out or "-"
        lines = [
            f"InferenceService {self.namespace}/{self.name} ({self.mode or 'cluster default'} mode)",
            f"  model: {self.storage_uri or 'unknown'}",
            f"  canaryTrafficPercent: {share}",
            f"  latest rolled-out revision: {latest}; previous: {previous}",
        ]
        lines += [f"  {percent:3d}% -> {revision}" for revision, percent in self.traffic]
        return "\n".join(lines)


def canary_state(api: CustomObjects, name: str, namespace: str) -> CanaryState:
    isvc = dict(
        api.get_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, "inferenceservices", name)
    )
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    status = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    traffic = tuple(
        (str(t.get("revisionName") or t.get("tag") or "?"), int(t.get("percent") or 0))
        for t in status.get("traffic") or []
    )
    percent = predictor.get("canaryTrafficPercent")
    return CanaryState(
        name,
        namespace,
        deployment_mode(isvc),
        (predictor.get("model") or {}).get("storageUri"),
        None if percent is None else int(percent),
        traffic,
        status.get("latestRolledoutRevision"),
        status.get("previousRolledoutRevision"),
    )


def set_canary_traffic(api: CustomObjects, name: str, namespace: str, percent: int) -> CanaryState:
    """Finish a canary (100: the new revision takes all traffic) or undo it (0: KServe sends all
    traffic back to the previously rolled-out revision and keeps it pinned there). Knative mode
    only: Standard mode has no canary to move, and this says so instead of patching."""
    if percent not in (0, 100):
        raise RegistryError(f"a canary is finished (100) or undone (0), not set to {percent}")
    state = canary_state(api, name, namespace)
    if state.mode != KNATIVE:
        raise RolloutRefused(
            f"InferenceService {namespace}/{name} runs in {state.mode or 'the cluster default'} mode: it has "
            "no canary to finish or undo (a promotion there replaces the model as a rolling update). "
            "To go back to the previous model, run `eyeops registry rollback MODEL` and promote that version."
        )
    if percent == 0 and not state.previous_rolled_out:
        raise RolloutRefused(
            f"InferenceService {namespace}/{name} has no previously rolled-out revision to send traffic "
            "back to (KServe reports none); nothing was changed."
        )
    api.patch_namespaced_custom_object(
        KSERVE_GROUP,
        KSERVE_VERSION,
        namespace,
        "inferenceservices",
        name,
        {"spec": {"predictor": {"canaryTrafficPercent": percent}}},
    )
    return canary_state(api, name, namespace)


def kube_api() -> CustomObjects:
    """CustomObjectsApi from the pod's service account inside a cluster, else from the kubeconfig
    (KUBECONFIG or ~/.kube/config) of whoever runs the command."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise RegistryError(
                f"no Kubernetes API to reach: not inside a cluster, and no usable kubeconfig ({exc}); "
                "set KUBECONFIG or write ~/.kube/config for the cluster eyeops runs in"
            ) from exc
    api: CustomObjects = client.CustomObjectsApi()
    return api


def in_cluster_api() -> CustomObjects:
    """CustomObjectsApi from the pod's service account (the pipeline runner's, granted get and patch
    on the two InferenceServices by the chart)."""
    from kubernetes import client, config

    config.load_incluster_config()
    api: CustomObjects = client.CustomObjectsApi()
    return api
