"""The gateway's MQTT seam: the only gateway module that imports the MQTT client (paho-mqtt)."""

from gateway.mqtt.session import BrokerSession, Message

__all__ = ["BrokerSession", "Message"]
