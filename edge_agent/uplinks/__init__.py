"""Northbound uplinks: ``http`` (to ingest) and ``mqtt`` (to the site broker)."""
