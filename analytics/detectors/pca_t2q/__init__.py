"""PCA T² + Q detector."""

from analytics.detectors.pca_t2q.detector import PCAT2QDetector

__all__ = ["PCAT2QDetector"]
