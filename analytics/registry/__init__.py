"""Versioned model registry (joblib + metadata JSON)."""

from analytics.registry.metadata import ModelMetadata, check_compatible, library_versions
from analytics.registry.store import ModelRegistry

__all__ = ["ModelMetadata", "ModelRegistry", "check_compatible", "library_versions"]
