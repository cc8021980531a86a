"""A stand-in for the few Grafana HTTP API routes ``zhizao dashboards push`` uses (Grafana itself
cannot be installed on these machines). It follows Grafana's documented behaviour for them: bearer
token auth (401 otherwise), 404 for a missing datasource/folder, 409 for a duplicate, dashboards
versioned by uid. The client under test is the real ``grafana-client``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def grafana_app(token: str) -> FastAPI:
    app = FastAPI()
    state: dict[str, dict[str, Any]] = {"datasources": {}, "folders": {}, "dashboards": {}}
    app.state.grafana = state
    app.state.calls = []

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        app.state.calls.append(f"{request.method} {request.url.path}")
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"message": "Unauthorized"}, 401)
        return await call_next(request)

    def found(kind: str, uid: str) -> JSONResponse:
        item = state[kind].get(uid)
        return JSONResponse(item) if item else JSONResponse({"message": f"{kind} {uid} not found"}, 404)

    @app.get("/api/datasources/uid/{uid}")
    async def get_ds(uid: str) -> JSONResponse:
        return found("datasources", uid)

    @app.post("/api/datasources")
    async def create_ds(request: Request) -> JSONResponse:
        body = await request.json()
        if body["uid"] in state["datasources"]:
            return JSONResponse({"message": "data source with the same uid already exists"}, 409)
        state["datasources"][body["uid"]] = {**body, "id": len(state["datasources"]) + 1, "version": 1}
        return JSONResponse({"message": "Datasource added", "datasource": state["datasources"][body["uid"]]})

    @app.put("/api/datasources/uid/{uid}")
    async def update_ds(uid: str, request: Request) -> JSONResponse:
        if uid not in state["datasources"]:
            return JSONResponse({"message": "Data source not found"}, 404)
        old = state["datasources"][uid]
        state["datasources"][uid] = {**await request.json(), "id": old["id"], "version": old["version"] + 1}
        return JSONResponse({"message": "Datasource updated"})

    @app.get("/api/folders/{uid}")
    async def get_folder(uid: str) -> JSONResponse:
        return found("folders", uid)

    @app.post("/api/folders")
    async def create_folder(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("uid") in state["folders"]:
            return JSONResponse({"message": "a folder with the same uid already exists"}, 409)
        state["folders"][body["uid"]] = {"uid": body["uid"], "title": body["title"]}
        return JSONResponse(state["folders"][body["uid"]])

    @app.post("/api/dashboards/db")
    async def save_dashboard(request: Request) -> JSONResponse:
        body = await request.json()
        doc = body["dashboard"]
        if body.get("folderUid") not in state["folders"]:
            return JSONResponse({"message": "folder not found"}, 400)
        old = state["dashboards"].get(doc["uid"])
        if old is not None and not body.get("overwrite"):
            return JSONResponse({"message": "The dashboard has been changed by someone else"}, 412)
        version = old["version"] + 1 if old else 1
        state["dashboards"][doc["uid"]] = {"dashboard": doc, "folderUid": body["folderUid"],
                                           "version": version}
        return JSONResponse({"status": "success", "uid": doc["uid"], "version": version})

    return app
