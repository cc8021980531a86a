"""The KPI HTTP API, as an ``APIRouter`` factory ingest mounts (depends only on the Store protocol).

- ``GET /api/v1/kpis?scope=<asset prefix>&from=<RFC 3339>&to=<RFC 3339>&group_by=shift|day|machine``
- ``GET /api/v1/kpis/improvement?scope=&baseline_from=&baseline_to=&from=&to=``

A ``scope`` with no machine under it (neither in the plant file nor in the store) is 404, the
detail listing the known lines and machines; a malformed one, or bad times, 422.

Mount it in ingest's ``create_app``::

    from analytics.kpi.api import create_router
    from ingest.api.deps import get_store, require
    app.include_router(create_router(plant, kpi_cfg, store_dep=get_store,
                                     read_dep=require(Scope.READ)))
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from analytics.errors import UnknownScope
from analytics.kpi.config import KpiConfig
from analytics.kpi.service import improvement_report, kpi_report
from analytics.kpi.windows import GroupBy
from ingest.api.times import NAIVE_HINT, QueryTime
from ingest.storage.base import Store
from zhizao.model import check_asset_prefix
from zhizao.plant import PlantConfig

MAX_RANGE_DAYS = 93
TIME_DOC = "RFC 3339 with offset, or a plain date (midnight UTC)"


def _check(scope: str, start: datetime, end: datetime, what: str = "") -> None:
    try:
        check_asset_prefix(scope)
    except ValueError as exc:
        raise HTTPException(422, f"scope: {exc}") from None
    for name, ts in ((f"{what}from", start), (f"{what}to", end)):
        if ts.tzinfo is None:
            raise HTTPException(422, f"{name}: {NAIVE_HINT}")
    if end <= start:
        raise HTTPException(422, f"{what}to must be after {what}from")
    if (end - start).days > MAX_RANGE_DAYS:
        raise HTTPException(422, f"range longer than {MAX_RANGE_DAYS} days; ask for less")


def create_router(plant: PlantConfig, cfg: KpiConfig, *, store_dep: Callable[..., Store],
                  read_dep: Callable[..., Any] | None = None) -> APIRouter:
    """Routes serving KPIs of ``plant`` from the store ``store_dep`` yields; ``read_dep`` (e.g.
    ingest's read-scope check) guards every route."""
    deps = [Depends(read_dep)] if read_dep is not None else []
    router = APIRouter(prefix="/api/v1", tags=["kpis"], dependencies=deps)
    store_param = Depends(store_dep)  # a default, not an annotation: annotations are strings here

    @router.get("/kpis")
    async def get_kpis(
        *,
        store: Store = store_param,
        scope: Annotated[str, Query(description="asset prefix: site, site/area, line or machine")],
        start: Annotated[QueryTime, Query(alias="from", description=TIME_DOC)],
        end: Annotated[QueryTime, Query(alias="to", description=TIME_DOC)],
        group_by: GroupBy = GroupBy.SHIFT,
    ) -> dict[str, Any]:
        """KPIs of every machine and line under ``scope`` and their total, per window
        (field names carry units; definitions in analytics/kpi/README.md)."""
        _check(scope, start, end)
        try:
            return await kpi_report(store, plant, cfg, scope, start=start, end=end, group_by=group_by,
                                    strict=True)
        except UnknownScope as exc:
            raise HTTPException(404, str(exc)) from None

    @router.get("/kpis/improvement")
    async def get_improvement(
        *,
        store: Store = store_param,
        scope: Annotated[str, Query()],
        baseline_from: Annotated[QueryTime, Query()],
        baseline_to: Annotated[QueryTime, Query()],
        start: Annotated[QueryTime, Query(alias="from")],
        end: Annotated[QueryTime, Query(alias="to")],
    ) -> dict[str, Any]:
        """Improvement of ``[from, to)`` against ``[baseline_from, baseline_to)`` and whether each
        target (energy efficiency, operating cost, productivity) is met."""
        _check(scope, baseline_from, baseline_to, "baseline_")
        _check(scope, start, end)
        try:
            return await improvement_report(store, plant, cfg, scope, baseline=(baseline_from, baseline_to),
                                            current=(start, end), strict=True)
        except UnknownScope as exc:
            raise HTTPException(404, str(exc)) from None

    return router
