"""Online feature extraction (trailing windows only)."""

from analytics.features.rolling import MultiScaleMeans, TrailingMean

__all__ = ["MultiScaleMeans", "TrailingMean"]
