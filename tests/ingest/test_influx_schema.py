"""The documented InfluxDB schema: the README's Grafana queries return rows on a real influxd."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.settings import InfluxSettings, Settings
from ingest.storage.base import EventQuery, SampleFrame
from ingest.storage.influxdb.store import InfluxStore
from tests.ingest.conftest import M1, M2, T0, sample
from tests.support.servers import InfluxDB
from zhizao.config import load_config
from zhizao.events import Event, EventSource, EventState

README = Path(__file__).resolve().parents[2] / "ingest" / "storage" / "README.md"


def _readme_queries() -> list[str]:
    block = README.read_text().split("Grafana (InfluxQL) examples:")[1].split("```sql")[1].split("```")[0]
    queries, current = [], ""
    for line in block.splitlines():
        if line.startswith("--"):
            continue
        if line.startswith(("SELECT", "SHOW")) and current.strip():
            queries.append(current)
            current = ""
        current += " " + line.strip()
    return [q.strip() for q in [*queries, current] if q.strip()]


async def test_readme_queries_return_rows(influxdb: InfluxDB) -> None:
    async with InfluxStore(InfluxSettings(url=influxdb.url, database=influxdb.database)) as store:
        await store.write(SampleFrame.from_samples(
            [sample(M1, "power_kw", i, 10.0 + i, "kW") for i in range(60)]
            + [sample(M2, "power_kw", i, 5.0, "kW") for i in range(60)]
            + [sample(M1, "state", i, "running" if i < 30 else "down") for i in range(0, 60, 10)]
            + [sample(M1, "melt_temp", i, 230.0) for i in range(60)]))
        await store.upsert_events([Event(id="e1", source=EventSource.KPI, rule="oee_low",
                                         asset="plant/a1/line1", start=T0 + timedelta(seconds=5))])
    start_ns = int(T0.timestamp()) * 10**9
    time_filter = f"time >= {start_ns} AND time < {start_ns + 3600 * 10**9}"
    queries = _readme_queries()
    annotation = re.search(r"Grafana annotation query for events:\s*`([^`]+)`", README.read_text())
    assert annotation is not None
    queries.append(annotation.group(1))
    assert len(queries) == 6
    for q in queries:
        text = (q.replace("$timeFilter", time_filter).replace("$__interval", "10s").replace("$line", "line1")
                .replace("cnc-1", M1.machine))
        doc = json.loads(influxdb.query(text, db=influxdb.database))
        result = doc["results"][0]
        assert "error" not in result, (text, result)
        assert result.get("series") and result["series"][0]["values"], text


@pytest.mark.parametrize("path", ["ingest/sample.toml", "ingest/storage/duckdb/sample.toml",
                                  "ingest/storage/influxdb/sample.toml"])
def test_sample_configs_load(path: str) -> None:
    settings = load_config(Settings, Path(__file__).resolve().parents[2] / path)
    assert settings.storage.backend in ("duckdb", "influxdb")


async def test_event_queries_transfer_only_overlapping_episodes(influxdb: InfluxDB) -> None:
    """``query_events(start=...)`` does not load the whole events history from InfluxDB."""
    async with InfluxStore(InfluxSettings(url=influxdb.url, database=influxdb.database)) as store:
        old = [Event(id=f"old-{i}", source=EventSource.KPI, rule="r", asset=str(M1),
                     start=T0 + timedelta(minutes=i)).resolved(T0 + timedelta(minutes=i, seconds=30))
               for i in range(200)]
        long_open = Event(id="long-open", source=EventSource.ANOMALY, rule="m", asset=str(M1), start=T0)
        await store.upsert_events([*old, long_open])
        rows_seen: list[int] = []
        real = store.influxql

        async def counting(q: str, *, write: bool = False) -> list[dict[str, Any]]:
            series = await real(q, write=write)
            rows_seen.append(sum(len(s.get("values") or []) for s in series))
            return series

        store.influxql = counting  # type: ignore[method-assign]
        got = await store.query_events(EventQuery(start=T0 + timedelta(days=1)))
        assert [e.id for e in got] == ["long-open"]
        assert sum(rows_seen) == 1


async def test_events_written_before_the_id_tag_are_still_read(influxdb: InfluxDB) -> None:
    """Points of the earlier schema (no ``event_id`` tag, no ``end_us``) are read, and an update
    written since (a tagged point) wins over them."""
    def legacy(e: Event, updated: int) -> str:
        return (f"zhizao_events,source={e.source.value},asset={e.asset},rule={e.rule} "
                f'id="{e.id}",state="{e.state.value}",doc={json.dumps(e.model_dump_json())},'
                f"updated={updated}i {int(e.start.timestamp() * 10**6)}")
    a = Event(id="legacy-a", source=EventSource.KPI, rule="r", asset=str(M1), start=T0)
    b = Event(id="legacy-b", source=EventSource.KPI, rule="r", asset=str(M1),
              start=T0 - timedelta(days=2)).resolved(T0 + timedelta(hours=5))
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{influxdb.url}/write", params={"db": influxdb.database, "precision": "u"},
                               content="\n".join([legacy(a, 1), legacy(b, 1)]))
    assert resp.status_code == 204, resp.text
    async with InfluxStore(InfluxSettings(url=influxdb.url, database=influxdb.database)) as store:
        got = await store.query_events(EventQuery(start=T0 + timedelta(hours=1)))
        assert [(e.id, e.state) for e in got] == [
            ("legacy-a", EventState.OPEN), ("legacy-b", EventState.RESOLVED)]
        await store.upsert_events([a.resolved(T0 + timedelta(minutes=30))])
        got = await store.query_events(EventQuery(start=T0 + timedelta(hours=1)))
        assert [e.id for e in got] == ["legacy-b"]
        everything = await store.query_events(EventQuery())
        assert [(e.id, e.state) for e in everything] == [
            ("legacy-a", EventState.RESOLVED), ("legacy-b", EventState.RESOLVED)]
