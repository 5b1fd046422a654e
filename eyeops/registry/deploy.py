"""Promotion on a cluster: point an InferenceService's predictor at the new champion's storageUri,
optionally as a canary (KServe splits traffic between the last ready revision and the new one
when `canaryTrafficPercent` < 100; 100 rolls out fully)."""

from __future__ import annotations

from typing import Any, Protocol

from eyeops.registry.store import RegistryError

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"


class CustomObjects(Protocol):
    """The part of kubernetes.client.CustomObjectsApi promotion uses (injected; faked in tests)."""

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any
    ) -> Any: ...


def storage_uri_patch(storage_uri: str, canary_percent: int = 100) -> dict[str, Any]:
    """A merge patch for `spec.predictor`: the model's storageUri and the share of traffic it gets."""
    if not 0 < canary_percent <= 100:
        raise RegistryError(f"canary percentage must be 1–100, got {canary_percent}")
    if "://" not in storage_uri:
        raise RegistryError(f"{storage_uri!r} is not a storage URI (pvc://, s3://, gs://, file://, ...)")
    return {
        "spec": {"predictor": {"canaryTrafficPercent": canary_percent, "model": {"storageUri": storage_uri}}}
    }


def promote_inference_service(
    api: CustomObjects, name: str, namespace: str, storage_uri: str, canary_percent: int = 100
) -> dict[str, Any]:
    patch = storage_uri_patch(storage_uri, canary_percent)
    api.patch_namespaced_custom_object(
        KSERVE_GROUP, KSERVE_VERSION, namespace, "inferenceservices", name, patch
    )
    return patch


def in_cluster_api() -> CustomObjects:
    """CustomObjectsApi from the pod's service account (the pipeline runner's, granted patch on
    inferenceservices by the chart)."""
    from kubernetes import client, config  # type: ignore[import-untyped]

    config.load_incluster_config()
    api: CustomObjects = client.CustomObjectsApi()
    return api
