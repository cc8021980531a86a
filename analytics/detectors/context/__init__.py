"""Context-aware detector wrapper."""

from analytics.detectors.context.detector import ContextDetector

__all__ = ["ContextDetector"]
