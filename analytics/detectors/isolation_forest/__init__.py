"""IsolationForest detector."""

from analytics.detectors.isolation_forest.detector import IsolationForestDetector

__all__ = ["IsolationForestDetector"]
