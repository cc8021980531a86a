"""Embedded DuckDB storage backend (the default)."""

from ingest.storage.duckdb.store import DuckDBStore

__all__ = ["DuckDBStore"]
