"""Quality model: scrap probability per cycle."""

from analytics.detectors.quality.model import ScrapModel

__all__ = ["ScrapModel"]
