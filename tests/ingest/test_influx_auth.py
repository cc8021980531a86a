"""The InfluxDB backend against an ``influxd`` with authentication on (username/password)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
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

    def _wait_ready(self) -> None:
        """Any failure is a ``TimeoutError``, so ``start()`` kills the process instead of leaking it."""
        try:
            self._setup()
        except (OSError, AssertionError, KeyError, ValueError) as exc:
            raise TimeoutError(str(exc)) from exc

    def _setup(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError from None
                time.sleep(0.1)
        for q, creds in ((f"CREATE USER {USER} WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES", {}),
                         (f'CREATE DATABASE "{self.database}"', {"u": USER, "p": PASSWORD})):
            url = f"{self.url}/query?{urllib.parse.urlencode(creds)}"
            body = urllib.parse.urlencode({"q": q}).encode()
            with urllib.request.urlopen(url, data=body, timeout=10) as resp:
                assert "error" not in json.loads(resp.read())["results"][0]


@pytest.fixture
def auth_influxdb(tmp_path: Path) -> Iterator[AuthInfluxDB]:
    server = AuthInfluxDB(tmp_path / "influxdb-auth")
    server.start()
    try:
        yield server
    finally:
        server.kill()


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
