"""OPC UA connector: subscriptions or polling, secure channels, reconnect, vanished nodes skipped."""

from edge_agent.connectors.opcua.config import OpcUaConnectorConfig
from edge_agent.connectors.opcua.connector import OpcUaConnector

__all__ = ["OpcUaConnector", "OpcUaConnectorConfig"]
