"""InfluxDB refusing a batch's data (400) is that batch's permanent refusal, never an outage.

Security review H1: one unparseable line made InfluxDB answer 400, ingest answered 503 "nothing
was stored" — and, writes being grouped, so did the other producers' batches of the same group;
agents and the gateway retried them forever. Now: the group is split until the batch at fault is
alone, it alone is answered 422 naming InfluxDB's error (the agent dead-letters it), the others
are stored. Against a real ``influxd`` 1.x; the bad data is, past validation, a value or a name
line protocol cannot carry, or a field type conflict ingest cannot tell the dropped samples of
(``unprovable``: a conflict it can tell is no refusal any more — the batch is answered 200 with
exactly the samples InfluxDB dropped, ``test_influx_type_conflicts.py``). (A timestamp InfluxDB
cannot store, the trigger here before, is no longer sent to it: such samples are rejected one by
one, the rest of their batch stored — ``test_influx_time_range.py``.)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from edge_agent.uplinks.http.config import HttpUplinkConfig
from edge_agent.uplinks.http.uplink import HttpUplink
from ingest.settings import InfluxSettings
from ingest.storage import base
from ingest.storage.base import BatchKey, EventQuery, SampleFrame, SeriesQuery, WriteResult
from ingest.storage.influxdb.lineproto import LineCache, tag_value
from ingest.storage.influxdb.store import InfluxStore
from ingest.testing import run_server, server_settings
from tests.ingest.conftest import M1, M2, T0
from tests.ingest.helpers import (
    assert_problem,
    batch,
    conflicting,
    post,
    prime_field_type_conflict,
    prime_unprovable_conflict,
    stored_count,
    unprovable,
)
from tests.support.servers import InfluxDB
from zhizao.errors import Rejected
from zhizao.events import Event
from zhizao.model import Sample
from zhizao.wire import encode_batch

CONFLICT = "field type conflict"
"""What influxd answers (400) for a point whose field has another type than the shard knows."""
TYPE = "type: not stored"
"""How a sample InfluxDB dropped for a field type conflict is answered (rejected, the rest stored)."""


def _frame(signal: str, n: int = 5, start: datetime = T0) -> SampleFrame:
    return SampleFrame.from_samples([Sample(M1, signal, start + timedelta(seconds=i), float(i), "kW")
                                     for i in range(n)])


def _unparsable_frame() -> SampleFrame:
    """A frame whose value is NaN — refused by every validator; built raw here, as a validator bug
    would let it through: written ``value=null``, which influxd cannot parse (400)."""
    frame = SampleFrame()
    frame.append_raw(str(M2), "y", (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
                     float("nan"), unit=None, quality="good")
    return frame


def _newline_frame() -> SampleFrame:
    """A frame whose signal holds a line break — refused by every validator since fd01e17; built
    raw here, as a validator bug would let it through."""
    frame = SampleFrame()
    frame.append_raw(str(M2), "y\n", (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
                     1.0, unit=None, quality="good")
    return frame


def _influx(server: InfluxDB) -> InfluxStore:
    return InfluxStore(InfluxSettings(url=server.url, database=server.database))


async def _count(store: InfluxStore, asset: str = "plant") -> int:
    day = timedelta(days=1)
    got = await store.query(SeriesQuery(asset=asset, start=T0 - day, end=T0 + day))
    return sum(len(s) for s in got)


async def test_a_refused_batch_fails_alone_in_its_group(influxdb: InfluxDB) -> None:
    """The first write goes out alone, the next eleven wait for it and go as one group holding the
    bad batch: it gets DataRefused naming InfluxDB's error, the ten others are stored and recorded."""
    async with _influx(influxdb) as store:
        victims = [(_frame(f"sig{i}"), BatchKey("victim", f"v{i}")) for i in range(11)]
        bad = (_unparsable_frame(), BatchKey("attacker", "a1"))
        answers = await asyncio.gather(*(store.write(f, k) for f, k in [victims[0], bad, *victims[1:]]),
                                       return_exceptions=True)
        refused = answers[1]
        assert isinstance(refused, base.DataRefused), answers
        assert "400" in str(refused) and "unable to parse" in refused.reason, refused
        stored = [answers[0], *answers[2:]]
        assert all(isinstance(a, WriteResult) and a.accepted == 5 for a in stored), answers
        assert await _count(store) == 55
        for _, key in victims:
            assert await store.seen(key) == WriteResult(5, duplicate=True)
        assert await store.seen(bad[1]) is None  # never acknowledged: not deduplicated either


async def test_a_line_break_in_a_name_never_reaches_influxdb(influxdb: InfluxDB) -> None:
    """The review's reproduction, past validation: the frame is refused before it is queued (line
    protocol cannot carry it), so it never joins, nor breaks, anyone's group."""
    async with _influx(influxdb) as store:
        answers = await asyncio.gather(store.write(_frame("x"), BatchKey("victim", "v0")),
                                       store.write(_newline_frame(), BatchKey("attacker", "a1")),
                                       store.write(_frame("z"), BatchKey("victim", "v1")),
                                       return_exceptions=True)
        assert isinstance(answers[1], base.DataRefused) and "'\\n'" in answers[1].reason, answers
        assert answers[0] == answers[2] == WriteResult(5), answers
        assert await _count(store) == 10


async def test_events_with_a_line_break_in_a_tag_are_refused(influxdb: InfluxDB) -> None:
    """``model_construct`` skips the Event validators (which refuse it): the store still refuses."""
    ok = Event(id="ev-1", source="kpi", rule="oee_low", asset=str(M1), start=T0)
    bad = Event.model_construct(**{**ok.__dict__, "rule": "oee\nlow,site=x"})
    async with _influx(influxdb) as store:
        with pytest.raises(base.DataRefused, match="line protocol"):
            await store.upsert_events([bad])
        await store.upsert_events([ok])
        assert [e.id for e in await store.query_events(EventQuery())] == ["ev-1"]


def test_tag_values_are_escaped_or_refused() -> None:
    assert tag_value("a b,c=d") == "a\\ b\\,c\\=d"
    assert tag_value("") == "_"
    for bad in ("a\nb", "a\rb", "end\\", "a\\,b"):
        with pytest.raises(ValueError, match="line protocol cannot carry"):
            tag_value(bad)
    frame = SampleFrame()
    frame.append_raw("s/a/l/m", "sig\r", 0, 1.0, unit=None, quality="good")
    with pytest.raises(ValueError, match="'\\\\r'"):
        LineCache("telemetry").fill(frame)
    frame = SampleFrame()
    frame.append_raw("s/a b/l/m", "sig", 0, 1.0, unit=None, quality="good")
    cache = LineCache("tele metry")
    cache.fill(frame)
    assert list(cache.heads.values()) == [b'tele\\ metry,area=a\\ b,line=l,machine=m,signal=sig,site=s '
                                          b'quality="good",value=']


def test_http_refused_batch_is_422_and_the_others_are_stored(tmp_path: Path, influxdb: InfluxDB) -> None:
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    prime_unprovable_conflict(influxdb)
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = post(c, unprovable("a1"))
        assert_problem(r, 422, "the store refused this batch's data", CONFLICT)
        assert "index" not in r.text  # a whole-batch refusal: the agent dead-letters the batch
        # bulk: the bad line is refused on its own, the good lines stored (they share one write)
        lines = [encode_batch(batch(f"b{i}", n=10, producer=f"agent-{i}", signal=f"s{i}")) for i in range(4)]
        lines.insert(2, encode_batch(unprovable("a2")))
        r = c.post("/api/v1/batches/bulk", content=b"\n".join(lines),
                   headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["errors"] == 1 and doc["accepted"] == 40, doc
        error = doc["batches"][2]["error"]
        assert error["status"] == 422 and CONFLICT in error["detail"], doc
        assert [b["error"] is None for b in doc["batches"]] == [True, True, False, True, True]
        assert stored_count(c) == 40
        metrics = c.get("/metrics").text
        assert 'zhizao_ingest_store_errors_total{operation="write"}' not in metrics \
            or 'zhizao_ingest_store_errors_total{operation="write"} 0.0' in metrics
        assert 'zhizao_ingest_store_up 1.0' in metrics


def test_many_producers_one_refused(tmp_path: Path, influxdb: InfluxDB) -> None:
    """The review's collateral run: 200 victim batches among 20 conflicting ones, all at once —
    every victim is stored (200), every conflicting one answered with its sample rejected (200,
    nothing accepted: the groups they share are settled point by point), none answered 503."""
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    prime_field_type_conflict(influxdb)

    async def run(url: str) -> list[tuple[str, int, int, bool]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            async def one(kind: str, i: int) -> tuple[str, int, int, bool]:
                b = (batch(f"v{i}", n=50, producer="victim", signal=f"s{i}") if kind == "victim"
                     else conflicting(f"a{i}"))
                r = await c.post("/api/v1/batches", content=encode_batch(b),
                                 headers={"content-type": "application/json"})
                doc = r.json()
                rejected = [x["reason"] for x in doc.get("rejected", [])]
                return kind, r.status_code, doc.get("accepted", -1), all(x.startswith(TYPE) for x in rejected)

            jobs = []
            for i in range(200):
                jobs.append(one("victim", i))
                if i % 10 == 0:
                    jobs.append(one("attacker", i))
            return await asyncio.gather(*jobs)

    with run_server(settings) as url:
        answers = asyncio.run(run(url))
        assert sorted(set(answers)) == [("attacker", 200, 0, True), ("victim", 200, 50, True)], answers
        with httpx.Client(base_url=url) as c:
            assert stored_count(c) == 200 * 50


async def test_the_agent_dead_letters_a_refused_batch(tmp_path: Path, influxdb: InfluxDB) -> None:
    """edge_agent's HTTP uplink reads the 422 (no per-sample index) as Rejected — the whole batch
    dead-lettered, never retried — and the good batch of the same bulk request as stored."""
    from edge_agent.buffer.encoded import EncodedBatch

    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    prime_unprovable_conflict(influxdb)
    with run_server(settings) as url:
        async with HttpUplink(HttpUplinkConfig(url=url)) as uplink:
            with pytest.raises(Rejected, match="422"):
                await uplink.send(unprovable("a1"))
            outcomes = await uplink.send_bulk([EncodedBatch.of_batch(batch("g1")),
                                               EncodedBatch.of_batch(unprovable("a2"))])
            assert outcomes[0] is None and isinstance(outcomes[1], Rejected), outcomes


def test_a_capacity_limit_of_influxdb_is_an_outage_not_the_batchs_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """influxd 1.x answers 400 'partial write: max-series-per-database limit exceeded' when a batch
    brings new series past its limit: a limit of the server, not a fault of the batch — raised,
    the same batch is stored. So it is 503 (the agent keeps the batch and retries), with one ERROR
    naming the limit, never 422 (the agent would dead-letter every batch of a new machine or signal
    for good). Found by review 47."""
    server = InfluxDB(tmp_path / "influx-limited")
    text = server.config_path.read_text()
    server.config_path.write_text(text.replace("[data]\n", "[data]\n  max-series-per-database = 4\n"))
    server.start()
    try:
        settings = server_settings(tmp_path)
        settings.storage.backend = "influxdb"
        settings.storage.influxdb.url = server.url
        with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
            statuses = [post(client, batch(f"b{i}", n=2, signal=f"s{i}")).status_code for i in range(8)]
    finally:
        server.kill()
    assert 503 in statuses and 422 not in statuses, statuses
    assert "max-series-per-database limit exceeded" in caplog.text
    assert "raise the limit in influxdb.conf" in caplog.text
