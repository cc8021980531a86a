"""One filled stack for the dashboard tests: a real influxd, a real ingest (InfluxDB backend) served
by uvicorn with the web dashboard and the KPI router mounted, the simulated line posted to it, the
KPI feed and alerter run over it. Built once per session (about 30 s), torn down at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from analytics.kpi.api import create_router
from analytics.kpi.config import KpiConfig
from dashboards.web import WebSettings, web_router
from ingest.api.deps import get_store, require
from ingest.app import create_app
from ingest.auth import Scope
from ingest.settings import Settings
from ingest.storage.registry import open_store
from ingest.testing import serve_app
from simulator.plant_export import plant_config
from tests.dashboards.fill import Filled, fill, kpis_and_alerts, now_s, scenario
from tests.support.servers import InfluxDB
from zhizao.plant import PlantConfig


@dataclass
class Stack:
    influx: InfluxDB
    url: str
    settings: Settings
    filled: Filled


def build_app(settings: Settings, plant: PlantConfig) -> FastAPI:
    """ingest's app with what ``zhizao ingest`` should mount: the KPI router and the web dashboard."""
    app = create_app(settings)
    app.include_router(create_router(plant, KpiConfig(), store_dep=get_store, read_dep=require(Scope.READ)))
    app.include_router(web_router(WebSettings(refresh_s=2, kpi_refresh_s=2)))
    return app


serve = serve_app
"""Serve an ASGI app (ingest, or the Grafana stand-in) on a free port in a thread."""


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("dash")
    influx = InfluxDB(root / "influxdb")
    influx.start()
    try:
        settings = Settings.model_validate({
            "storage": {"backend": "influxdb", "influxdb": {"url": influx.url, "database": "zhizao"}},
            "auth": {"enabled": False, "tokens_file": str(root / "tokens.json")},
        })
        sc = scenario(now_s())
        with serve(build_app(settings, plant_config(sc))) as url, \
                httpx.Client(base_url=url, timeout=60) as client:
            filled = fill(client, sc, root)

            async def feed() -> None:
                kpi = settings.storage.model_copy(deep=True)
                kpi.influxdb.measurement = "zhizao_kpi"
                async with open_store(settings.storage) as store, open_store(kpi) as sink:
                    events = await kpis_and_alerts(store, sink, filled.plant, filled.start, filled.end)
                    await store.upsert_events(events)

            asyncio.run(feed())
            yield Stack(influx, url, settings, filled)
    finally:
        influx.kill()
