"""The operations server shared by agent, gateway and scoring service, over real sockets."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from zhizao.errors import ZhizaoError
from zhizao.opsserver import Answer, alive, health_answer, json_answer, serve_ops


def _boom() -> Answer:
    raise RuntimeError("broken")


async def test_routes_errors_and_a_broken_route() -> None:
    routes = {"/healthz": lambda: health_answer((False, {"problems": ["x"]})), "/livez": alive,
              "/fleet": lambda: json_answer([1, 2]), "/broken": _boom}
    async with serve_ops("127.0.0.1", 0, routes, name="test") as port, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        r = await c.get("/healthz?verbose=1")
        assert r.status_code == 503 and r.json() == {"problems": ["x"]}
        assert (await c.get("/livez")).json() == {"status": "alive"}
        assert (await c.get("/fleet")).json() == [1, 2]
        missing = await c.get("/nope")
        assert missing.status_code == 404 and "/healthz" in missing.json()["detail"]
        assert (await c.post("/healthz")).status_code == 405
        broken = await c.get("/broken")
        assert broken.status_code == 500 and "RuntimeError" in broken.json()["detail"]
        assert (await c.get("/livez")).status_code == 200  # still serving


async def test_a_silent_client_is_dropped_and_others_are_served() -> None:
    async with serve_ops("127.0.0.1", 0, {"/livez": alive}, name="test") as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /livez HTTP/1.1\r\n")  # never finishes its head
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"http://127.0.0.1:{port}/livez")).status_code == 200
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after 5 s, no answer
        writer.close()


async def test_a_port_in_use_is_one_error_naming_the_address() -> None:
    """The agent's health port taken (e.g. by an agent that did not stop): a ZhizaoError, which
    the agent's and gateway's commands print on one line with exit 1 — it was a raw traceback."""
    async with serve_ops("127.0.0.1", 0, {"/livez": alive}, name="agent") as port:
        with pytest.raises(ZhizaoError, match=rf"agent: cannot serve http://127\.0\.0\.1:{port}: .*in use"):
            async with serve_ops("127.0.0.1", port, {"/livez": alive}, name="agent"):
                pass
