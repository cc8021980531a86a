"""Uplink registry: config ``type`` → uplink. Core code never names a concrete uplink."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge_agent.uplinks.base import Uplink
from zhizao.config import StrictModel


def build_uplink(cfg: StrictModel, agent_id: str, status: Callable[[], dict[str, Any]]) -> Uplink:
    """The uplink for the ``[uplink]`` table; ``status`` feeds status messages where the uplink has them."""
    kind = getattr(cfg, "type", None)
    if kind == "http":
        from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig

        assert isinstance(cfg, HttpUplinkConfig)
        return HttpUplink(cfg)
    if kind == "mqtt":
        from edge_agent.uplinks.mqtt import MqttUplink, MqttUplinkConfig

        assert isinstance(cfg, MqttUplinkConfig)
        return MqttUplink(cfg, agent_id, status)
    raise ValueError(f"unknown uplink type {kind!r}")
