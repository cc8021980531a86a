"""Backend registry: the only place that maps a backend name to its module (imported lazily)."""

from __future__ import annotations

from datetime import timedelta

from ingest.settings import DedupSettings, StorageSettings
from ingest.storage.base import Store


def open_store(settings: StorageSettings, dedup: DedupSettings | None = None) -> Store:
    """A not-yet-entered store for ``settings.backend`` (use ``async with``)."""
    dedup = dedup or DedupSettings()
    if settings.backend == "duckdb":
        from ingest.storage.duckdb.store import DuckDBStore

        return DuckDBStore(settings.duckdb.path, memory_limit=settings.duckdb.memory_limit)
    from ingest.storage.influxdb.store import InfluxStore

    return InfluxStore(settings.influxdb, dedup_window=timedelta(days=dedup.max_age_days),
                       dedup_max=dedup.max_entries)
