"""Versioned model registry (joblib + metadata JSON)."""

from analytics.registry.metadata import ModelMetadata, check_compatible, library_versions
from analytics.registry.store import ModelRegistry, UnreadableMetadata, UnusableModel

__all__ = ["ModelMetadata", "ModelRegistry", "UnreadableMetadata", "UnusableModel", "check_compatible",
           "library_versions"]
