"""Versioned model artifacts under a storage root, with metadata, metrics and a champion pointer."""

from eyeops.registry.store import ModelRegistry, ModelVersion, RegistryError

__all__ = ["ModelRegistry", "ModelVersion", "RegistryError"]
