"""HTTP uplink to zhizao ingest (``POST /api/v1/batches``); reused as-is by the site gateway."""

from edge_agent.uplinks.http.config import HttpUplinkConfig
from edge_agent.uplinks.http.uplink import HttpUplink, parse_retry_after

__all__ = ["HttpUplink", "HttpUplinkConfig", "parse_retry_after"]
