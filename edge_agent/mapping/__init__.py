"""MQTT payload mapping, free of any MQTT library: topic patterns → asset paths, JSON → samples.

Shared by the agent's MQTT connector and the site gateway (raw vendor topics).
"""

from edge_agent.mapping.payload import (
    EARLIEST,
    JsonMapping,
    MappingError,
    MapResult,
    PayloadMapper,
    QualitySpec,
    TimestampSpec,
    ValuesSpec,
    check_mappings,
    cover_filters,
    get_path,
)
from edge_agent.mapping.topics import TopicPattern, filter_covers, filters_overlap

__all__ = [
    "EARLIEST",
    "JsonMapping",
    "MapResult",
    "MappingError",
    "PayloadMapper",
    "QualitySpec",
    "TimestampSpec",
    "TopicPattern",
    "ValuesSpec",
    "check_mappings",
    "cover_filters",
    "filter_covers",
    "filters_overlap",
    "get_path",
]
