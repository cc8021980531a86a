"""MQTT output of MQTT-native machines: vendor payload shapes and the publisher."""

from simulator.mqtt.payloads import VENDORS, encode_payload, topic_for

__all__ = ["VENDORS", "encode_payload", "topic_for"]
