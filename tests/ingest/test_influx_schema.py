"""The documented InfluxDB schema: the README's Grafana queries return rows on a real influxd."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.settings import InfluxSettings, Settings
from ingest.storage.base import SampleFrame
from ingest.storage.influxdb.store import InfluxStore
from tests.ingest.conftest import M1, M2, T0, sample
from tests.support.servers import InfluxDB
from zhizao.config import load_config
from zhizao.events import Event, EventSource

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
