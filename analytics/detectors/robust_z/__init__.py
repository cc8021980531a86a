"""Robust z-score detector."""

from analytics.detectors.robust_z.detector import RobustZDetector

__all__ = ["RobustZDetector"]
