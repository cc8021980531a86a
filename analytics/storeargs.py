"""The store a command reads, from ``--duckdb FILE`` or ``--ingest-config FILE`` (its ``[storage]``).

Shared by ``zhizao analytics train`` and ``zhizao analytics kpi``. Both only *read* history, so a
DuckDB file that does not exist is refused (opening it would create an empty store, and the
command would then report "no data" about a file nobody meant): a ``DataError`` naming the option,
which the CLIs turn into exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from analytics.errors import DataError

if TYPE_CHECKING:
    from ingest.settings import StorageSettings


def read_storage(duckdb: str | None, ingest_config: str | None) -> StorageSettings:
    """The storage settings to read from: ``duckdb`` if given, else ``ingest_config``'s, else ingest's
    defaults (with their ``ZHIZAO_*`` environment overrides). A DuckDB file must exist."""
    from ingest.settings import DuckDBSettings, StorageSettings, load_settings

    if duckdb:
        settings = StorageSettings(backend="duckdb", duckdb=DuckDBSettings(path=duckdb))
    else:
        settings = load_settings(ingest_config).storage
    path = settings.duckdb.path
    if settings.backend == "duckdb" and path != ":memory:" and not Path(path).is_file():
        if duckdb:
            raise DataError("--duckdb", f"no DuckDB file {path!r} (history is read, never created)")
        if ingest_config:
            raise DataError("--ingest-config", f"its DuckDB store {path!r} does not exist "
                                               "(history is read, never created)")
        raise DataError("--duckdb", f"no store given and the default DuckDB file {path!r} does not exist: "
                                    "name the store with --duckdb FILE or --ingest-config FILE")
    return settings
