"""Connector registry: config ``type`` → connector. Core code never names a concrete connector."""

from __future__ import annotations

from pathlib import Path

from edge_agent.connectors.base import Connector
from edge_agent.deadletter import DeadLetter
from zhizao.config import StrictModel


def build_connector(cfg: StrictModel, agent_id: str, state_dir: Path, deadletter: DeadLetter) -> Connector:
    """The connector for one ``[[connectors]]`` entry (imports only that connector's library)."""
    kind = getattr(cfg, "type", None)
    if kind == "opcua":
        from edge_agent.connectors.opcua import OpcUaConnector, OpcUaConnectorConfig

        assert isinstance(cfg, OpcUaConnectorConfig)
        return OpcUaConnector(cfg, agent_id, state_dir)
    if kind == "mqtt":
        from edge_agent.connectors.mqtt import MqttConnector, MqttConnectorConfig

        assert isinstance(cfg, MqttConnectorConfig)
        return MqttConnector(cfg, agent_id, deadletter)
    raise ValueError(f"unknown connector type {kind!r}")
