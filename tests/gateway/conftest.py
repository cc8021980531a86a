"""Fixtures of the gateway suite: a real ingest (DuckDB) in a thread, gateway subprocesses."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest

from gateway.testing import GatewayProcess, ingest_written, write_config, written_in
from ingest.app import create_app
from ingest.extensions import configured_routers
from ingest.settings import Settings
from ingest.testing import run_server, server_settings
from tests.support.ports import free_port
from tests.support.servers import Mosquitto


class Ingest:
    """A real ingest server (uvicorn thread, DuckDB file) that a test can stop and restart."""

    def __init__(self, tmp_path: Path) -> None:
        base = server_settings(tmp_path).model_dump(mode="json")
        self.settings = Settings.model_validate({**base, "extensions": {**base["extensions"], "fleet": True}})
        self.db_path = Path(self.settings.storage.duckdb.path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ctx: object | None = None
        self._app: FastAPI | None = None
        self._written_before = 0  # by earlier runs: each app instance has its own metrics registry

    def start(self) -> None:
        app = create_app(self.settings, routers=configured_routers(self.settings))
        ctx = run_server(self.settings, port=self.port, app=app)
        ctx.__enter__()
        self._ctx = ctx
        self._app = app

    def stop(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(None, None, None)  # type: ignore[attr-defined]
            # counted once the server is down: requests in flight at the stop are included
            assert self._app is not None
            registry = self._app.state.service.metrics.registry
            self._written_before += written_in(generate_latest(registry).decode())

    def written(self) -> int:
        """Samples stored since the first start (across restarts)."""
        return self._written_before + ingest_written(self.url)


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    """A real ingest (DuckDB) with ``GET /api/v1/agents`` mounted (``[extensions] fleet = true``)."""
    server = Ingest(tmp_path / "ingest")
    (tmp_path / "ingest").mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def gateway_factory(tmp_path: Path, mosquitto: Mosquitto, ingest: Ingest) -> Iterator[GatewayFactory]:
    """``make(gateway_id="gw-1", extra="")`` writes a config and starts ``python -m gateway``."""
    procs: list[GatewayProcess] = []

    def make(gateway_id: str = "gw-1", extra: str = "", start: bool = True,
             fleet_report_s: float = 3600, stall_after_s: float = 120) -> GatewayProcess:
        port = free_port()
        cfg = write_config(tmp_path / f"{gateway_id}.toml", broker_port=mosquitto.port, ingest_url=ingest.url,
                           gateway_id=gateway_id, health_port=port, extra=extra,
                           fleet_report_s=fleet_report_s, stall_after_s=stall_after_s)
        proc = GatewayProcess(cfg, port)
        procs.append(proc)
        if start:
            proc.start()
        return proc

    try:
        yield make
    finally:
        for p in procs:
            p.kill()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
