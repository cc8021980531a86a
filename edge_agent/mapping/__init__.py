"""MQTT payload mapping, free of any MQTT library: topic patterns → asset paths, JSON → samples.

Shared by the agent's MQTT connector and the site gateway (raw vendor topics).
"""

from edge_agent.mapping.payload import (
    JsonMapping,
    MappingError,
    MapResult,
    PayloadMapper,
    QualitySpec,
    TimestampSpec,
    ValuesSpec,
    get_path,
)
from edge_agent.mapping.topics import TopicPattern

__all__ = [
    "JsonMapping",
    "MapResult",
    "MappingError",
    "PayloadMapper",
    "QualitySpec",
    "TimestampSpec",
    "TopicPattern",
    "ValuesSpec",
    "get_path",
]
