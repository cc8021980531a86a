"""The one event/alert mechanism of zhizao: episode tracking with debounce, fan-out to sinks.

KPI alerts (``analytics.kpi.alerts``) and anomaly episodes both use it::

    from analytics.events import EpisodeTracker, build_emitter
"""

from analytics.events.config import EventsConfig, SinksConfig, ThresholdRule, build_emitter
from analytics.events.debounce import ANOMALY_CLEAR_AFTER_S, ANOMALY_HOLD_ACROSS_GAPS, ANOMALY_OPEN_AFTER_S
from analytics.events.emitter import EventEmitter
from analytics.events.tracker import EpisodeTracker, episode_id

__all__ = ["ANOMALY_CLEAR_AFTER_S", "ANOMALY_HOLD_ACROSS_GAPS",
           "ANOMALY_OPEN_AFTER_S", "EpisodeTracker", "EventEmitter", "EventsConfig",
           "SinksConfig", "ThresholdRule", "build_emitter", "episode_id"]
