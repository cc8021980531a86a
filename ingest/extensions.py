"""Routers of other components mounted into ``zhizao ingest`` by configuration (``[extensions]``).

The only place ingest names them, imported lazily: ``fleet`` = ``gateway.fleet_api`` (``GET
/api/v1/agents``), ``kpi_config`` = ``analytics.kpi.api`` (``GET /api/v1/kpis`` ...), both guarded
by the read scope; ``web`` = ``dashboards.web`` (the page at ``/``; its data comes from the API,
which asks for a token when auth is on). Programmatic users pass ``routers=`` to ``create_app``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ingest.api.deps import get_store, require
from ingest.auth import Scope
from ingest.settings import Settings
from zhizao.config import validate


def configured_routers(settings: Settings) -> list[APIRouter]:
    """The routers ``settings.extensions`` asks for (``ConfigError`` from their own loaders)."""
    routers: list[APIRouter] = []
    ext = settings.extensions
    if ext.fleet:
        from gateway.fleet_api import fleet_router

        routers.append(fleet_router(get_store, dependencies=[Depends(require(Scope.READ))]))
    if ext.kpi_config:
        from analytics.kpi.api import create_router
        from analytics.kpi.config import load_kpi_config

        kpi_cfg, plant = load_kpi_config(ext.kpi_config)
        routers.append(create_router(plant, kpi_cfg, store_dep=get_store, read_dep=require(Scope.READ)))
    if ext.web:
        from dashboards.web.router import WebSettings, web_router

        routers.append(web_router(validate(WebSettings, ext.web_options, "[extensions.web_options]")))
    return routers
