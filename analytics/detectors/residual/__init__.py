"""Regression-residual (MSET-style) detector."""

from analytics.detectors.residual.detector import ResidualDetector

__all__ = ["ResidualDetector"]
