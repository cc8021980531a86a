"""The scoring service's liveness and readiness contract (review finding A4), over real HTTP:
its operations server, a real ingest on uvicorn with DuckDB, the service in this process.

``/healthz`` answered 200 while a machine failed (only that machine's status said so). Now a
failing machine makes ``/readyz`` and ``/healthz`` 503 ``degraded`` naming it, while ``/livez``
— what a Kubernetes liveness probe restarts on — stays 200: a restart would not fix one
machine's ingest scope, nor an outage. ``/livez`` fails only for a wedged loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from analytics.registry import ModelRegistry
from analytics.scoring import AnomalyModel
from analytics.scoring.service import ScoringService, ServiceConfig
from analytics.scoring.service.health import serve_health
from analytics.scoring.service.source import IngestApiIO
from ingest.storage.base import CatalogueEntry, Series, SeriesQuery
from ingest.testing import run_server, server_settings
from tests.analytics.conftest import normal_rows
from tests.support.waiting import eventually
from zhizao.errors import StoreUnavailable
from zhizao.model import AssetPath, Batch, Sample
from zhizao.net import free_port
from zhizao.wire import encode_batch

LINE = "plant8/a1/line1"
GOOD, BAD = f"{LINE}/mill-1", f"{LINE}/mill-2"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "ingest").mkdir()
    with run_server(server_settings(tmp_path / "ingest")) as url:
        yield url


def _setup(tmp_path: Path, url: str) -> None:
    """Models for both machines; ten minutes of their two signals in ingest."""
    reg = ModelRegistry(tmp_path / "models")
    X = normal_rows(600, 2, 1)
    samples = []
    for asset in (GOOD, BAD):
        reg.save(asset, AnomalyModel().fit(normal_rows(900, 2, 0), columns=["vib", "temp"]))
        path = AssetPath.parse(asset)
        samples += [Sample(path, s, T0 + timedelta(seconds=i), float(X[i, j]))
                    for i in range(600) for j, s in enumerate(["vib", "temp"])]
    r = httpx.post(f"{url}/api/v1/batches", content=encode_batch(Batch("plc", "b-1", 1, tuple(samples))),
                   headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text


def config(tmp_path: Path, url: str, **health: Any) -> ServiceConfig:
    return ServiceConfig.model_validate({
        "scopes": [LINE], "registry": str(tmp_path / "models"), "state_dir": str(tmp_path / "state"),
        "interval_s": 0.1, "window_s": 60, "lateness_s": 5, "quiet_close_s": 1.0, "backfill_s": 7200.0,
        "registry_poll_s": 0.2, "ingest": {"url": url}, "health": {"port": 0, **health}})


async def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.get(f"http://127.0.0.1:{port}{path}")
    doc: dict[str, Any] = r.json()
    return r.status_code, doc


class OneMachineFails(IngestApiIO):
    """Ingest answers 5xx to every read of machine BAD while ``fail`` is set."""

    fail = True

    async def query(self, q: SeriesQuery) -> list[Series]:
        if OneMachineFails.fail and q.asset == BAD:
            raise StoreUnavailable(f"ingest: HTTP 500 for {q.asset}")
        return await super().query(q)


async def test_a_failing_machine_degrades_readiness_never_liveness(tmp_path: Path, ingest: str) -> None:
    _setup(tmp_path, ingest)
    cfg = config(tmp_path, ingest)
    assert cfg.ingest is not None
    OneMachineFails.fail = True
    svc = ScoringService(cfg, io=OneMachineFails(cfg.ingest))
    async with serve_health(svc, "127.0.0.1", 0) as port:
        assert await get(port, "/livez") == (200, {"status": "alive"})
        code, doc = await get(port, "/readyz")
        assert code == 503 and doc["status"] == "starting"       # no round yet: not ready
        task = asyncio.create_task(svc.run())
        try:
            def scored_and_failing() -> bool:
                good, bad = svc.workers.get(GOOD), svc.workers.get(BAD)
                return (good is not None and good.state is not None and good.state.cursor_us
                        >= int((T0 + timedelta(seconds=600)).timestamp() * 1e6)
                        and bad is not None and bad.status == "store_unavailable")

            await eventually(scored_and_failing, 30, "mill-1 scored while mill-2 fails")
            assert await get(port, "/livez") == (200, {"status": "alive"})   # never restarted for it
            code, health = await get(port, "/healthz")
            assert code == 503 and health["status"] == "degraded", health
            code, ready = await get(port, "/readyz")
            assert code == 503 and ready["status"] == "degraded" and health["failing"] == ready["failing"]
            assert [(f["machine"], f["status"]) for f in ready["failing"]] == [(BAD, "store_unavailable")]
            assert "HTTP 500" in ready["failing"][0]["problem"] and ready["failing"][0]["since"].endswith("Z")
            machines = {m["machine"]: m for m in health["machines"]}
            assert machines[GOOD]["status"] == "ok" and machines[BAD]["status"] == "store_unavailable"
            assert REGISTRY.get_sample_value("zhizao_scoring_machine_ok", {"machine": BAD}) == 0

            OneMachineFails.fail = False                           # ingest answers for mill-2 again

            for _ in range(300):                                   # the next round's step succeeds
                if (await get(port, "/readyz"))[0] == 200:
                    break
                await asyncio.sleep(0.1)
            code, ready = await get(port, "/readyz")
            assert code == 200 and ready == {"status": "ready", "problems": [], "failing": []}
            code, health = await get(port, "/healthz")
            assert code == 200 and health["status"] == "ready"
            assert {m["machine"]: m["status"] for m in health["machines"]} == {GOOD: "ok", BAD: "ok"}
        finally:
            svc.stop()
            await task


class Hangs(IngestApiIO):
    """The catalogue request never returns once ``hang`` is set (a wedged await)."""

    hang = False

    async def catalogue(self, prefix: str) -> list[CatalogueEntry]:
        if Hangs.hang:
            await asyncio.Event().wait()
        return await super().catalogue(prefix)


async def test_an_outage_is_unhealthy_but_alive_and_only_a_wedged_loop_is_not_alive(
        tmp_path: Path, ingest: str) -> None:
    """Ingest unreachable: rounds fail and back off (waits up to 2 s, longer than
    ``wedged_after_s``), ``/readyz`` says ``unhealthy`` after ``stall_after_s``, ``/livez`` stays
    200. Then a loop whose await never returns: ``/livez`` 503 ``wedged`` — the restart case."""
    dead = ServiceConfig.model_validate({
        **config(tmp_path, f"http://127.0.0.1:{free_port()}").model_dump(),
        "health": {"port": 0, "stall_after_s": 0.5, "wedged_after_s": 1.0}})
    svc = ScoringService(dead)
    async with serve_health(svc, "127.0.0.1", 0) as port:
        task = asyncio.create_task(svc.run())
        try:
            await asyncio.sleep(3.5)                               # rounds at 0, 1, 3 s: waits of 1-2 s
            assert svc.failures.get("store_unavailable", 0) >= 2
            assert await get(port, "/livez") == (200, {"status": "alive"})
            code, ready = await get(port, "/readyz")
            assert code == 503 and ready["status"] == "unhealthy"
            assert "no successful round" in ready["problems"][0]
        finally:
            svc.stop()
            await task

    _setup(tmp_path, ingest)
    cfg = config(tmp_path, ingest, wedged_after_s=1.0)
    assert cfg.ingest is not None
    Hangs.hang = False
    svc = ScoringService(cfg, io=Hangs(cfg.ingest))
    async with serve_health(svc, "127.0.0.1", 0) as port:
        task = asyncio.create_task(svc.run())
        try:
            await eventually(lambda: svc.last_ok is not None, 20, "a successful round")
            assert (await get(port, "/livez"))[0] == 200
            Hangs.hang = True
            await asyncio.sleep(2.0)
            code, live = await get(port, "/livez")
            assert code == 503 and live["status"] == "wedged" and "wedged_after_s" in live["problem"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
