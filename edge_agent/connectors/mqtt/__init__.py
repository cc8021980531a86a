"""MQTT connector: vendor JSON payloads from a broker, acknowledged only after commit."""

from edge_agent.connectors.mqtt.config import BrokerConnection, MqttConnectorConfig, TlsConfig
from edge_agent.connectors.mqtt.connector import MqttConnector

__all__ = ["BrokerConnection", "MqttConnector", "MqttConnectorConfig", "TlsConfig"]
