"""Versioned model registry (joblib + metadata JSON)."""

from analytics.registry.metadata import ModelMetadata, check_compatible, library_versions
from analytics.registry.store import ModelRegistry, UnreadableMetadata, UnusableModel, signal_problem

__all__ = ["ModelMetadata", "ModelRegistry", "UnreadableMetadata", "UnusableModel", "check_compatible",
           "library_versions", "signal_problem"]
