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
    wire_version: Literal[1, 2] = 2
    """Wire-format version of the messages: 2 (samples grouped into series, where it pays: see
    :func:`edge_agent.uplinks.mqtt.encode_part`) or 1, for a site gateway older than version 2
    of the format (its check read only version 1 fast and forwarded version 1)."""
    timeout_s: float = Field(10.0, gt=0)
    max_inflight: int = Field(100, ge=1, le=65535)
    status_interval_s: float = Field(30.0, gt=0)
    max_batch_samples: int = Field(5000, ge=1, le=100_000)
    linger_s: float = Field(1.0, ge=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_cap_s: float = Field(30.0, gt=0)
