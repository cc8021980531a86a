"""MQTT uplink to the site broker: per-machine batches in zhizao's wire format, birth and last will."""

from edge_agent.uplinks.mqtt.config import MqttUplinkConfig
from edge_agent.uplinks.mqtt.uplink import MqttUplink, encode_part, split_by_asset

__all__ = ["MqttUplink", "MqttUplinkConfig", "encode_part", "split_by_asset"]
