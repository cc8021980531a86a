"""Online feature extraction (trailing windows only)."""

from analytics.features.rolling import MultiScaleMeans, TrailingAbsDiffMean, TrailingMean

__all__ = ["MultiScaleMeans", "TrailingAbsDiffMean", "TrailingMean"]
