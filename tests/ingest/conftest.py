"""Fixtures of the ingest tests: each Store backend opened on real storage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ingest.settings import InfluxSettings
from ingest.storage.base import Store
from ingest.storage.duckdb.store import DuckDBStore
from ingest.storage.influxdb.store import InfluxStore
from zhizao.model import AssetPath, Quality, Sample, Value

if TYPE_CHECKING:
    from tests.ingest.test_influx_auth import AuthInfluxDB

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
M1 = AssetPath("plant", "a1", "line1", "cnc-1")
M2 = AssetPath("plant", "a1", "line1", "cnc-2")
OTHER_LINE = AssetPath("plant", "a1", "line10", "cnc-1")


def sample(asset: AssetPath, signal: str, seconds: float, value: Value, unit: str | None = None,
           quality: Quality = Quality.GOOD) -> Sample:
    return Sample(asset, signal, T0 + timedelta(seconds=seconds), value, unit, quality)


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "duckdb":
        return DuckDBStore(tmp_path / "store.duckdb")
    server = request.getfixturevalue("influxdb")
    return InfluxStore(InfluxSettings(url=server.url, database=server.database))


@pytest.fixture(params=["duckdb", "influxdb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open store of each backend, empty."""
    s = make_store(request.param, tmp_path, request)
    async with s:
        yield s


@pytest.fixture
def auth_influxdb(tmp_path: Path) -> Iterator[AuthInfluxDB]:
    """A fresh influxd with authentication on, its admin user and database created."""
    from tests.ingest.test_influx_auth import AuthInfluxDB as Server

    server = Server(tmp_path / "influxdb-auth")
    server.start()
    try:
        yield server
    finally:
        server.kill()
