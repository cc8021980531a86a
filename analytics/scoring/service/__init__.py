"""The production scoring service: ``zhizao analytics serve --config FILE`` (see README.md here)."""

from analytics.scoring.service.config import ServiceConfig, load_service_config
from analytics.scoring.service.service import ScoringService

__all__ = ["ScoringService", "ServiceConfig", "load_service_config"]
