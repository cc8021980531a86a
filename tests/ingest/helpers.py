"""Small helpers for the ingest HTTP tests."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ingest.settings import Settings
from ingest.testing import server_settings
from tests.ingest.conftest import M1, M2, T0
from tests.support.servers import InfluxDB
from zhizao.model import AssetPath, Batch, Sample
from zhizao.wire import batch_to_dict, encode_batch


def batch(batch_id: str = "b-1", n: int = 10, producer: str = "agent-1", signal: str = "power_kw") -> Batch:
    samples = tuple(Sample(M1, signal, T0 + timedelta(seconds=i), float(i), "kW") for i in range(n))
    return Batch(producer, batch_id, 1, samples)


def post(client: httpx.Client, b: Batch, *, gzip: bool = False, **headers: str) -> httpx.Response:
    hdrs = {"content-type": "application/json", **headers}
    if gzip:
        hdrs["content-encoding"] = "gzip"
    return client.post("/api/v1/batches", content=encode_batch(b, compress=gzip), headers=hdrs)


def post_with_naive_sample(client: httpx.Client, b: Batch, at: int = 3) -> tuple[
        dict[str, Any], dict[int, str], list[Sample | None], bytes]:
    """POST ``b`` as a v1 document with a copy of its sample ``at`` stamped without a time zone
    inserted before it (rejected when decoded, so document indexes and stored positions differ):
    the answer (200), its other rejected samples ``{index: reason}``, the document's samples
    (``None`` for that one) and the body (to send again)."""
    doc = batch_to_dict(b)
    doc["samples"].insert(at, {**doc["samples"][at], "ts": "2026-11-23T08:00:00"})
    body = orjson.dumps(doc)
    r = client.post("/api/v1/batches", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    answer = r.json()
    rejected = {x["index"]: x["reason"] for x in answer["rejected"]}
    assert rejected.pop(at).startswith("ts:"), answer
    return answer, rejected, [*b.samples[:at], None, *b.samples[at:]], body


def stored_count(client: httpx.Client, asset: str = "plant", **headers: str) -> int:
    """Number of samples stored under ``asset`` (all time)."""
    r = client.get("/api/v1/series", params={
        "asset": asset, "start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}, headers=headers)
    assert r.status_code == 200, r.text
    return sum(len(s["values"]) for s in r.json()["series"])


def assert_problem(r: httpx.Response, status: int, *fragments: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    doc = r.json()
    assert doc["status"] == status and doc["title"] and doc["detail"]
    for f in fragments:
        assert f in doc["detail"], (f, doc["detail"])


def auth_settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    """Ingest settings with auth on, on ``backend`` (``influxdb``: the test's ``influxdb`` fixture)."""
    settings = server_settings(tmp_path, auth=True, backend=backend)
    if backend == "influxdb":
        influxdb: InfluxDB = request.getfixturevalue("influxdb")
        settings.storage.influxdb.url = influxdb.url
    return settings


WEEK = timedelta(days=7)
"""The shard group duration of influxd's default retention policy: field types are per shard group."""


def us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def write_direct(server: InfluxDB, lines: str) -> None:
    """Write ``lines`` (``precision=u``) straight to ``server``, as another client would; 204 expected."""
    req = urllib.request.Request(f"{server.url}/write?db={server.database}&precision=u", method="POST",
                                 data=lines.encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def prime(server: InfluxDB, field: str, literal: str, *times: datetime) -> None:
    """Another client writes ``field`` (``literal``: ``1.5`` a float, ``1i`` an integer) of zhizao's
    measurement at each of ``times``: from then on that field has that type in the shard group of
    each time, and influxd drops every point there carrying it with another type."""
    write_direct(server, "\n".join(f"telemetry,area=x,line=x,machine=other,signal=x,site=x {field}={literal} "
                                   f"{us(t)}" for t in times))


def prime_field_type_conflict(server: InfluxDB) -> None:
    """Another client writes ``vtype`` as a float into ``server``'s shard of ``T0``: from then on
    influxd drops (400 "partial write: field type conflict") every point there whose ``vtype`` is a
    string — an integer sample's (:func:`conflicting`) — and stores float samples (which carry no
    ``vtype``)."""
    prime(server, "vtype", "1", T0)


def conflicting(batch_id: str, producer: str = "attacker", n: int = 1) -> Batch:
    """A batch none of whose samples an influxd primed by :func:`prime_field_type_conflict` stores:
    integer samples (200, every sample rejected for the conflict)."""
    return Batch(producer, batch_id, 1, tuple(Sample(M2, "parts", T0 + timedelta(seconds=i), i, None)
                                              for i in range(n)))


UNPROVABLE_WEEKS = 40


def prime_unprovable_conflict(server: InfluxDB) -> None:
    """``value_str`` as a float in every other shard group of :data:`UNPROVABLE_WEEKS` weeks from
    ``T0`` (the even ones): :func:`unprovable` batches conflict in half their shard groups."""
    prime(server, "value_str", "1.5", *(T0 + k * WEEK for k in range(0, UNPROVABLE_WEEKS, 2)))


ELSEWHERE = AssetPath("elsewhere", "a1", "line1", "m-1")
"""The machine of :func:`unprovable` batches: not under ``plant`` (:func:`stored_count`)."""


def unprovable(batch_id: str, producer: str = "attacker") -> Batch:
    """String samples of :data:`ELSEWHERE`, two a week over :data:`UNPROVABLE_WEEKS` weeks: after
    :func:`prime_unprovable_conflict` influxd stores half of them, and telling which takes more
    writes than ingest spends on it — the batch is refused (422) rather than guessed."""
    return Batch(producer, batch_id, 1, tuple(
        Sample(ELSEWHERE, "state", T0 + k * WEEK + timedelta(seconds=s), f"S{k}")
        for k in range(UNPROVABLE_WEEKS) for s in range(2)))
