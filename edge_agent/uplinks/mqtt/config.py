"""Configuration of the MQTT uplink to the site broker (``[uplink]`` with ``type = "mqtt"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.connectors.mqtt import BrokerConnection


class MqttUplinkConfig(BrokerConnection):
    """See ``edge_agent/uplinks/mqtt/sample.toml``."""

    type: Literal["mqtt"] = "mqtt"
    protocol: Literal["3.1.1", "5"] = "5"
    gzip: bool = False
    timeout_s: float = Field(10.0, gt=0)
    max_inflight: int = Field(100, ge=1, le=65535)
    status_interval_s: float = Field(30.0, gt=0)
    max_batch_samples: int = Field(5000, ge=1, le=100_000)
    linger_s: float = Field(1.0, ge=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_cap_s: float = Field(30.0, gt=0)
