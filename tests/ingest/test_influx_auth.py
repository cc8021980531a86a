"""The InfluxDB backend against an ``influxd`` with authentication on (username/password)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.settings import InfluxSettings
from ingest.storage.base import SampleFrame, SeriesQuery
from ingest.storage.influxdb.store import InfluxStore
from tests.ingest.conftest import M1, T0, sample
from tests.support.servers import InfluxDB
from zhizao.errors import StoreUnavailable

USER, PASSWORD = "zhizao", "s3cret-pass"


class AuthInfluxDB(InfluxDB):
    """The fixture's influxd with ``auth-enabled``; an admin user and the database are created."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        text = self.config_path.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n")
        self.config_path.write_text(text)

    def _setup(self) -> None:
        """The admin user first (allowed without credentials on a fresh server), then the database."""
        for q, user in ((f"CREATE USER {USER} WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES", None),
                        (f'CREATE DATABASE "{self.database}"', USER)):
            answer = json.loads(self.query(q, user=user, password=PASSWORD if user else None))
            assert "error" not in answer["results"][0], answer


async def test_username_password_auth(auth_influxdb: AuthInfluxDB) -> None:
    db = auth_influxdb.database
    good = InfluxSettings(url=auth_influxdb.url, database=db, username=USER, password=PASSWORD)
    async with InfluxStore(good) as store:
        await store.ping()
        await store.write(SampleFrame.from_samples([sample(M1, "power_kw", 1, 2.5, "kW")]))
        await store.delete_before(T0)  # a POSTed InfluxQL statement, authenticated too
        got = await store.query(SeriesQuery(asset=str(M1), start=T0, end=T0.replace(hour=9)))
        assert got[0].values() == [2.5]
    bad = InfluxSettings(url=auth_influxdb.url, database=db, username=USER, password="nope")
    async with InfluxStore(bad) as store:
        with pytest.raises(StoreUnavailable, match="refuses the configured credentials"):
            await store.ping()  # so /readyz is 503 with wrong credentials
        with pytest.raises(StoreUnavailable, match="401"):
            await store.write(SampleFrame.from_samples([sample(M1, "power_kw", 2, 3.5, "kW")]))
        with pytest.raises(StoreUnavailable, match="401"):
            await store.query(SeriesQuery(asset=str(M1), start=T0, end=T0.replace(hour=9)))
