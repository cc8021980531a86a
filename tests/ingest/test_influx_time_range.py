"""Samples outside the time range InfluxDB stores (1677-09-21 .. 2262-04-11) are rejected one by
one; the rest of their batch is stored and acknowledged.

A valid batch may carry any year 1-9999. Sent to a real ``influxd`` 1.x, a line whose time it
cannot store is skipped: influxd stores the write's *other* points and answers ``400 partial
write: unable to parse '...': time outside range ... dropped=0``. Ingest read that 400 as the
batch's data refused and answered 422 "nothing of it was acknowledged" — while influxd held the
batch's other samples, and the agent dead-lettered them all. Now such samples are never sent:
the store takes them out of the frame, writes the rest, and the answer (200) lists exactly them as
rejected (index and reason ``ts: not stored — outside the time range InfluxDB stores ...``), as
for points beyond a retention policy. Checked against what influxd holds.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from edge_agent.uplinks.http.config import HttpUplinkConfig
from edge_agent.uplinks.http.uplink import HttpUplink
from ingest.settings import InfluxSettings, Settings
from ingest.storage.base import BatchKey, SampleFrame, WriteResult
from ingest.storage.influxdb.partial import MAX_US, MIN_US, RANGE_REASON
from ingest.storage.influxdb.store import InfluxStore
from ingest.testing import run_server, server_settings
from tests.ingest.conftest import M1, M2, T0
from tests.ingest.helpers import batch
from tests.support.servers import InfluxDB
from zhizao.errors import PartialWrite
from zhizao.model import Batch, Sample
from zhizao.wire import encode_batch

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR = datetime(9000, 1, 1, tzinfo=UTC)
"""Valid on the wire (years 1-9999), after what InfluxDB stores (2262-04-11)."""
EARLY = datetime(1600, 6, 1, tzinfo=UTC)
"""Valid on the wire, before what InfluxDB stores (1677-09-21)."""
OUTSIDE = {1, 3}
"""Indexes of :func:`_mixed`'s samples InfluxDB cannot store."""


def _us(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


def _mixed(batch_id: str, producer: str = "agent-1") -> Batch:
    """Five samples of one series, the second after 2262 and the fourth before 1677."""
    stamps = [T0, FAR, T0 + timedelta(seconds=1), EARLY, T0 + timedelta(seconds=2)]
    return Batch(producer, batch_id, 1,
                 tuple(Sample(M1, "temp", ts, float(i), "C") for i, ts in enumerate(stamps)))


def _far(batch_id: str, producer: str = "agent-9") -> Batch:
    return Batch(producer, batch_id, 1, (Sample(M2, "temp", FAR, 1.0, "C"),))


def _settings(tmp_path: Path, server: InfluxDB) -> Settings:
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = server.url
    settings.storage.influxdb.database = server.database
    return settings


def _held(server: InfluxDB) -> set[tuple[str, str, int]]:
    """(machine, signal, µs) of every sample point influxd holds."""
    url = f"{server.url}/query?" + urllib.parse.urlencode({
        "db": server.database, "epoch": "u",
        "q": 'SELECT "value" FROM "telemetry" GROUP BY "machine", "signal"'})
    with urllib.request.urlopen(url, timeout=30) as resp:
        doc = orjson.loads(resp.read())
    return {(s["tags"]["machine"], s["tags"]["signal"], t)
            for s in doc["results"][0].get("series", []) for t, _ in s["values"]}


def _key(sample: Sample) -> tuple[str, str, int]:
    return sample.asset.machine, sample.signal, _us(sample.ts)


def _rejected(doc: dict[str, Any]) -> dict[int, str]:
    return {r["index"]: r["reason"] for r in doc["rejected"]}


def test_a_batch_with_samples_outside_the_range_is_stored_but_them(tmp_path: Path,
                                                                    influxdb: InfluxDB) -> None:
    """200: the three storable samples stored and counted, the two others rejected by index with
    the range reason — exactly what influxd holds. A resend (also after a restart) is a duplicate
    answered alike."""
    b = _mixed("b-1")
    body = encode_batch(b)
    headers = {"content-type": "application/json"}
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/batches", content=body, headers=headers)
        assert r.status_code == 200, r.text
        first = r.json()
        assert _rejected(first) == dict.fromkeys(OUTSIDE, RANGE_REASON), first
        assert first["accepted"] == 3 and first["duplicate"] is False
        assert _held(influxdb) == {_key(s) for i, s in enumerate(b.samples) if i not in OUTSIDE}
        again = c.post("/api/v1/batches", content=body, headers=headers).json()
        assert again == {**first, "duplicate": True}
        metrics = c.get("/metrics").text
        assert 'zhizao_ingest_samples_rejected_total{reason="ts"} 2.0' in metrics, metrics
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/api/v1/batches", content=body, headers=headers).json() == {**first, "duplicate": True}


def test_bulk_a_batch_wholly_outside_the_range_is_answered_not_refused(tmp_path: Path,
                                                                        influxdb: InfluxDB) -> None:
    """In a bulk request sharing one write: the batch whose only sample is after 2262 is answered
    200-like (accepted 0, its sample rejected, no error), the mixed one with its two samples
    rejected, the others stored whole; nothing answered 422."""
    lines = [encode_batch(batch(f"b{i}", n=10, producer=f"agent-{i}", signal=f"s{i}")) for i in range(3)]
    lines.insert(1, encode_batch(_far("a1")))
    lines.insert(3, encode_batch(_mixed("m1")))
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/batches/bulk", content=b"\n".join(lines),
                   headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["errors"] == 0 and doc["accepted"] == 33, doc
    answers = doc["batches"]
    assert [a["error"] for a in answers] == [None] * 5, doc
    assert (answers[1]["accepted"], _rejected(answers[1])) == (0, {0: RANGE_REASON})
    assert (answers[3]["accepted"], set(_rejected(answers[3]))) == (3, OUTSIDE)
    assert [a["accepted"] for a in answers[::2]] == [10, 10, 10]
    assert len(_held(influxdb)) == 33


async def test_the_store_never_sends_influxdb_a_point_it_cannot_store(
        influxdb: InfluxDB, caplog: pytest.LogCaptureFixture) -> None:
    """Written together with other batches (one group write): the frames outside the range are
    answered with their dropped samples and no write is refused or split — influxd never saw them."""
    caplog.set_level(logging.INFO, logger="ingest.storage.influxdb.store")
    batches = [_mixed("m"), _far("f"), *(batch(signal=f"s{i}", n=5) for i in range(4))]
    frames = [SampleFrame.from_samples(list(b.samples)) for b in batches]
    async with InfluxStore(InfluxSettings(url=influxdb.url, database=influxdb.database)) as store:
        answers = await asyncio.gather(*(store.write(f, BatchKey("p", f"k{i}"))
                                         for i, f in enumerate(frames)))
        assert answers[0] == WriteResult(3, dropped=tuple((i, RANGE_REASON) for i in sorted(OUTSIDE)))
        assert answers[1] == WriteResult(0, dropped=((0, RANGE_REASON),))
        assert answers[2:] == [WriteResult(5)] * 4
        assert await store.seen(BatchKey("p", "k1")) == WriteResult(0, duplicate=True,
                                                                    dropped=((0, RANGE_REASON),))
    assert "refused" not in caplog.text, caplog.text
    assert len(_held(influxdb)) == 3 + 20


def test_storable_keeps_the_exact_bounds() -> None:
    """The first and last µs InfluxDB stores are kept; one µs beyond either is taken out; a frame
    wholly inside is returned as is (no copy)."""
    from ingest.storage.influxdb.partial import storable

    frame = SampleFrame()
    for ts in (MIN_US - 1, MIN_US, 0, MAX_US, MAX_US + 1):
        frame.append_raw(str(M1), "x", ts, 1.0, unit=None, quality="good")
    kept, positions, outside = storable(frame)
    assert kept.ts_us == [MIN_US, 0, MAX_US] and positions == [1, 2, 3]
    assert outside == ((0, RANGE_REASON), (4, RANGE_REASON))
    inside = kept.take([0, 1])
    assert storable(inside) == (inside, None, ())


async def test_the_agent_acknowledges_the_batch_and_dead_letters_only_those_samples(
        tmp_path: Path, influxdb: InfluxDB) -> None:
    """edge_agent's HTTP uplink reads the answer as a partial write (never ``Rejected``): the batch
    acknowledged, the two samples influxd cannot store handed back for the dead-letter file."""
    with run_server(_settings(tmp_path, influxdb)) as url:
        async with HttpUplink(HttpUplinkConfig(url=url)) as uplink:
            with pytest.raises(PartialWrite) as caught:
                await uplink.send(_mixed("u-1"))
    assert set(caught.value.rejected) == OUTSIDE and caught.value.accepted == 3


def test_line_protocol_at_influxdbs_first_nanoseconds(tmp_path: Path, influxdb: InfluxDB) -> None:
    """A ``/write`` timestamp in InfluxDB's range but not in whole µs of it (ingest stores µs, floor:
    1677-09-21T00:12:43.145224194Z becomes ...145224Z, before the first stored instant) is a value
    the store did not keep — a partial write naming it, its line's neighbours stored — never a 422."""
    body = (f"telemetry,site=plant,area=a1,line=line1,machine=cnc-1 x=1 {_us(T0) * 1000}\n"
            "telemetry,site=plant,area=a1,line=line1,machine=cnc-1 x=2 -9223372036854775806\n")
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/write", content=body.encode())
        metrics = c.get("/metrics").text
    assert r.status_code == 400, r.text
    assert "partial write: 1 values stored, 1 values not kept by the store" in r.json()["detail"], r.text
    assert 'zhizao_ingest_samples_rejected_total{reason="ts"} 1.0' in metrics
    assert _held(influxdb) == {("cnc-1", "x", _us(T0))}


def test_with_points_beyond_retention_each_sample_has_its_own_reason(tmp_path: Path,
                                                                      influxdb: InfluxDB) -> None:
    """A write that also loses points to a 1-hour retention policy: the samples outside the range
    (never sent) and those influxd dropped (the oldest of what was sent) are told apart, each by its
    index in the document — checked against what influxd holds."""
    influxdb.query(f'CREATE RETENTION POLICY "short" ON "{influxdb.database}" DURATION 1h '
                   "REPLICATION 1 DEFAULT")
    now = datetime.now(UTC).replace(microsecond=0)
    stamps = [now - timedelta(hours=3), FAR, now - timedelta(hours=2), now - timedelta(seconds=60),
              EARLY, now - timedelta(seconds=10)]
    b = Batch("agent-1", "r-1", 1,
              tuple(Sample(M1, "temp", ts, float(i), "C") for i, ts in enumerate(stamps)))
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/batches", content=encode_batch(b), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    rejected = _rejected(r.json())
    assert {i for i, why in rejected.items() if why == RANGE_REASON} == {1, 4}, rejected
    assert {i for i, why in rejected.items() if why.startswith("retention:")} == {0, 2}, rejected
    assert r.json()["accepted"] == 2
    assert _held(influxdb) == {_key(b.samples[3]), _key(b.samples[5])}
