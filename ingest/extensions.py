"""Routers of other components mounted into ``zhizao ingest`` by configuration (``[extensions]``).

The only place ingest names them, imported lazily: ``fleet`` = ``gateway.fleet_api`` (``GET
/api/v1/agents``), ``kpi_config`` = ``analytics.kpi.api`` (``GET /api/v1/kpis`` ...). Both are
guarded by the read scope. Programmatic users pass ``routers=`` to ``create_app`` instead.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ingest.api.deps import get_store, require
from ingest.auth import Scope
from ingest.settings import Settings


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
    return routers
