"""``web_router(settings) -> APIRouter``: the built-in web dashboard, for ingest to mount at ``/``.

Routes: ``GET /`` (the page), ``GET /ui/{file}`` (its script and style, from ``static/``, nothing
else), ``GET /ui/config.json`` (what the page needs to know: refresh period, chart span, the KPI
endpoint, the prefixes of derived series). The page itself reads ingest's public read API from the
browser — ``/api/v1/catalogue``, ``/latest``, ``/series``, ``/events`` and the KPI router's
``/api/v1/kpis`` and ``/api/v1/kpis/improvement`` (the Programme view) — with the token given once
as ``?token=...`` when ingest requires one: kept in the browser's localStorage, taken out of the
address bar at once, forgotten when ingest answers 401.
The page is served with a strict Content-Security-Policy (its own scripts only, no inline script or
style) and ``Referrer-Policy: no-referrer``, so a script injected through data cannot read the
token. Plain JavaScript and inline SVG: no front-end library, no CDN, nothing to build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field

from zhizao.config import StrictModel
from zhizao.signals import DERIVED_PREFIXES

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
PAGE_HEADERS: Final = {
    "Cache-Control": "no-cache",
    # the page keeps a read token in localStorage: no script but its own, no inline script or
    # style, no framing, and its address never leaves in a Referer
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_TYPES: Final = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}


class WebSettings(StrictModel):
    """Options of the web dashboard (``[web]`` in ingest's config if the lead wires one)."""

    title: str = "zhizao · line at a glance"
    refresh_s: float = Field(5.0, ge=1, le=300)
    """How often the page polls the API."""
    span_min: float = Field(10.0, ge=1, le=24 * 60)
    """Minutes of history in the live charts."""
    kpi_path: str = "/api/v1/kpis"
    """The KPI endpoint (analytics' router mounted on ingest)."""
    kpi_lookback_h: float = Field(12.0, gt=0, le=48)
    """The page asks for KPIs per shift over the last N hours and shows the newest window (the
    current shift so far); N must cover the longest shift."""
    kpi_refresh_s: float = Field(30.0, ge=1)
    """KPIs read the whole shift's raw data: they are refreshed less often than the charts."""


def web_router(settings: WebSettings | None = None) -> APIRouter:
    """The router serving the page; mount it on the ingest app (``app.include_router(...)``)."""
    cfg = settings or WebSettings()
    files = {p.name: p for p in STATIC_DIR.iterdir() if p.suffix in _TYPES}
    router = APIRouter(tags=["web dashboard"])

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(files["index.html"], media_type=_TYPES[".html"], headers=PAGE_HEADERS)

    @router.get("/ui/config.json", include_in_schema=False)
    async def config() -> JSONResponse:
        return JSONResponse({**cfg.model_dump(), "derived_prefixes": list(DERIVED_PREFIXES)})

    @router.get("/ui/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        path = files.get(name)
        if path is None:
            raise HTTPException(404, f"no such file: {name}")
        return FileResponse(path, media_type=_TYPES[path.suffix],
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    return router
