"""The simulator's OPC UA server (the only place that imports ``asyncua``)."""

from simulator.opcua.security import OpcUaSecurity, ensure_certificate
from simulator.opcua.server import NAMESPACE_URI, OpcUaServer

__all__ = ["NAMESPACE_URI", "OpcUaSecurity", "OpcUaServer", "ensure_certificate"]
