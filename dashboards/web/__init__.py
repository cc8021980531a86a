"""The built-in web dashboard: static HTML/JS/CSS served by ingest at ``/`` (no build step)."""

from dashboards.web.router import WebSettings, web_router

__all__ = ["WebSettings", "web_router"]
