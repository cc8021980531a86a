"""Expected-power (energy) detector."""

from analytics.detectors.expected_power.detector import ExpectedPowerDetector

__all__ = ["ExpectedPowerDetector"]
