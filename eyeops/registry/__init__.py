"""Versioned model artifacts under a storage root, with metadata, metrics and a champion pointer."""

from eyeops.registry.store import GateDecision, ModelRegistry, ModelVersion, RegistryError

__all__ = ["GateDecision", "ModelRegistry", "ModelVersion", "RegistryError"]
