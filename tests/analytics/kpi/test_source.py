"""Reading KPI input through a real Store: only machines enter KPIs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from analytics.kpi.source import fetch
from ingest.storage.base import SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from tests.analytics.kpi.test_engine import T0, _shift
from zhizao.fleet import FleetReport


async def test_fleet_health_assets_under_the_scope_are_not_machines(tmp_path: Path) -> None:
    machine_samples = _shift()
    machines = {str(s.asset) for s in machine_samples}
    site = next(iter(machines)).split("/")[0]
    report = FleetReport(site=site, node_id="agent-1", backlog_samples=3, backlog_age_s=1.5, dropped_total=0,
                         dead_letters_total=0, reconnects_total=1, sent_total=100)
    fleet = report.samples(T0 + timedelta(minutes=5))
    async with DuckDBStore(str(tmp_path / "kpi.duckdb")) as store:
        await store.write(SampleFrame.from_samples([*machine_samples, *fleet]))
        data = await fetch(store, site, T0, T0 + timedelta(hours=1), timedelta(minutes=5))
    assert set(data) == machines
