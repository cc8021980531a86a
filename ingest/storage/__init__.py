"""Storage backends behind the :class:`~ingest.storage.base.Store` protocol."""

from ingest.storage.base import (
    Agg,
    BatchKey,
    CatalogueEntry,
    EventQuery,
    LatestValue,
    SampleFrame,
    Series,
    SeriesQuery,
    Store,
    WriteResult,
)
from ingest.storage.registry import open_store

__all__ = [
    "Agg", "BatchKey", "CatalogueEntry", "EventQuery", "LatestValue", "SampleFrame", "Series",
    "SeriesQuery", "Store", "WriteResult", "open_store",
]
