"""What the per-producer rate limit charges, over a real uvicorn server, and its bounded table.

Review finding: the limiter was charged for a duplicate batch (a resend of a stored batch id,
answered ``duplicate``) and for a write that then failed with 503 (the sender retries: it paid
twice); a bulk request refused 429 for one producer had already charged the producers before it;
and its table of buckets never shrank. Now a write's samples are taken when it is admitted, held
while the store writes, and given back when the store answers that nothing was committed
(``StoreUnavailable``) or that the batch was a duplicate; a write the store stored, refused
(422) or committed after its 503 stays charged — a client gains nothing by sending failing writes.
Buckets full again are dropped. The limits are tight (0.01 samples/s refill) so the machine's
speed does not matter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest

from ingest.app import create_app
from ingest.ratelimit import RateLimiter
from ingest.service import IngestService
from ingest.settings import Settings
from ingest.storage.duckdb.store import DuckDBStore
from ingest.testing import run_server, server_settings
from tests.ingest.conftest import M2
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
from zhizao.model import Batch, Sample
from zhizao.wire import encode_batch

NDJSON = {"content-type": "application/x-ndjson"}


def _limited(tmp_path: Path, burst: int = 20, rate: float = 0.01, backend: str = "duckdb") -> Settings:
    settings = server_settings(tmp_path, backend=backend)
    settings.limits.rate_samples_per_s = rate
    settings.limits.rate_burst_samples = burst
    return settings


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, IngestService]]:
    """A DuckDB ingest allowing a burst of 20 samples per producer (hardly refilled), its service."""
    app = create_app(_limited(tmp_path))
    with run_server(app.state.settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c, app.state.service


def _duckdb(service: IngestService) -> DuckDBStore:
    store = service.store
    assert isinstance(store, DuckDBStore)
    return store


def test_a_resent_duplicate_is_not_charged(served: tuple[httpx.Client, IngestService]) -> None:
    """10 of 20 paid for b-1; its resend (the ack was lost) is a duplicate: free, so b-2 fits."""
    c, _ = served
    assert post(c, batch("b-1")).json()["duplicate"] is False
    assert post(c, batch("b-1")).json()["duplicate"] is True
    r = post(c, batch("b-2"))
    assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
    assert_problem(post(c, batch("b-3")), 429, "'agent-1'")  # 20 of 20 paid: the limit still holds
    assert stored_count(c) == 20


def test_a_write_the_store_did_not_commit_is_not_charged(served: tuple[httpx.Client, IngestService],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 (the store failed, nothing committed) gives the samples back: the sender's retry pays
    once, so b-2 still fits in the burst."""
    c, service = served
    writer = _duckdb(service).writer

    def failing(group: object) -> object:
        raise duckdb.IOException("simulated: disk gone")

    monkeypatch.setattr(writer, "commit", failing)
    assert_problem(post(c, batch("b-1")), 503, "nothing was stored")
    monkeypatch.undo()
    assert post(c, batch("b-1")).json()["duplicate"] is False
    assert post(c, batch("b-2")).status_code == 200
    assert_problem(post(c, batch("b-3")), 429, "'agent-1'")
    assert stored_count(c) == 20


def test_a_write_committed_after_its_503_is_charged_once(tmp_path: Path) -> None:
    """The store is slower than the write timeout: 503, but the write commits later. It stays
    charged (refunding every 503 would let a client that makes its writes time out store for
    free); its resend is a duplicate and free — paid exactly once."""
    settings = _limited(tmp_path)
    settings.storage.write_timeout_s = 0.3
    app = create_app(settings)
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        store = _duckdb(app.state.service)
        blocker = store._writer.submit(time.sleep, 1.0)  # the single writer is busy
        assert_problem(post(c, batch("b-1")), 503, "did not commit within 0.3 s")
        blocker.result()
        deadline = time.monotonic() + 20
        while (again := post(c, batch("b-1"))).status_code in (429, 503) and time.monotonic() < deadline:
            time.sleep(0.2)  # a loaded machine: the late commit (or a retry's) may still be queued
        assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
        assert post(c, batch("b-2")).status_code == 200
        assert_problem(post(c, batch("b-3")), 429, "'agent-1'")
        assert stored_count(c) == 20


def test_a_bulk_request_refused_for_one_producer_charges_no_producer(
        served: tuple[httpx.Client, IngestService]) -> None:
    """agent-2 cannot pay for its line: 429 for the whole request, and agent-1, whose line came
    first, keeps its whole burst (its next batches fit)."""
    c, _ = served
    assert post(c, batch("x-1", producer="agent-2")).status_code == 200  # agent-2: 10 of 20 left
    lines = b"\n".join(encode_batch(b) for b in (batch("a-1", n=15), batch("x-2", n=15, producer="agent-2")))
    assert_problem(c.post("/api/v1/batches/bulk", content=lines, headers=NDJSON), 429, "'agent-2'")
    assert post(c, batch("a-1", n=15)).status_code == 200
    assert stored_count(c) == 25


def test_writes_in_flight_hold_their_charge(tmp_path: Path) -> None:
    """Samples are taken when a write is admitted, not when it is answered: two writes sent while
    the store is busy cannot both spend the same burst."""
    settings = _limited(tmp_path)
    app = create_app(settings)

    async def two(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            rs = await asyncio.gather(*(post_async(c, batch(f"c-{i}", n=15)) for i in range(2)))
            return sorted(r.status_code for r in rs)

    with run_server(settings, app=app) as url:
        blocker = _duckdb(app.state.service)._writer.submit(time.sleep, 1.0)
        assert asyncio.run(two(url)) == [200, 429]  # the second while the first is being written
        blocker.result()


def test_a_refused_write_is_charged(tmp_path: Path, influxdb: InfluxDB) -> None:
    """Data the store refuses (InfluxDB: a field type conflict it cannot tell the dropped points of,
    422) stays charged: a client cannot spend the store's work for free by sending writes that
    fail. So does a batch all of whose samples the store did not keep (a field type conflict: 200,
    each sample rejected; InfluxDB cannot store year 9000: 200, each sample rejected — never sent
    to influxd, which would refuse it; both were 422 before)."""
    settings = _limited(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    prime_field_type_conflict(influxdb)
    prime_unprovable_conflict(influxdb)
    far = datetime(9000, 1, 1, tzinfo=UTC)
    beyond = Batch("agent-3", "far-1", 1, tuple(Sample(M2, "temp", far + timedelta(seconds=i), 1.0, "C")
                                                for i in range(15)))
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = post(c, conflicting("bad-1", producer="agent-1", n=15))
        assert r.status_code == 200 and r.json()["accepted"] == 0 and len(r.json()["rejected"]) == 15, r.text
        assert_problem(post(c, batch("b-1")), 429, "'agent-1'")
        assert_problem(post(c, unprovable("bad-2", producer="agent-4")), 422, "field type conflict")
        assert_problem(post(c, batch("b-4", producer="agent-4")), 429, "'agent-4'")
        assert post(c, batch("b-1", producer="agent-2")).status_code == 200
        r = post(c, beyond)
        assert r.status_code == 200 and r.json()["accepted"] == 0 and len(r.json()["rejected"]) == 15, r.text
        assert_problem(post(c, batch("b-3", producer="agent-3")), 429, "'agent-3'")


def test_full_idle_buckets_are_evicted(tmp_path: Path) -> None:
    """Many short-lived producers: once their buckets are full again (burst 100 at 1000/s: 10 ms)
    they are dropped from the table at the next sweep (at most once per second), which keeps only
    the producer still refilling; the gauge tells the size."""
    settings = _limited(tmp_path, burst=100, rate=1000.0)
    app = create_app(settings)
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        lines = b"\n".join(encode_batch(batch(f"e-{i}", producer=f"short-lived-{i}")) for i in range(300))
        r = c.post("/api/v1/batches/bulk", content=lines, headers=NDJSON)
        assert r.status_code == 200 and r.json()["accepted"] == 3000, r.text
        time.sleep(1.2)
        assert post(c, batch("e-last", n=90, producer="still-busy")).status_code == 200
        limiter = app.state.service.limiter
        assert limiter is not None and len(limiter) == 1
        assert "zhizao_ingest_rate_limit_producers 1.0" in c.get("/metrics").text


async def post_async(c: httpx.AsyncClient, b: Batch) -> httpx.Response:
    return await c.post("/api/v1/batches", content=encode_batch(b),
                        headers={"content-type": "application/json"})


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_take_refund_and_eviction_never_forgive_a_debt() -> None:
    clock = _Clock()
    lim = RateLimiter(rate=10.0, burst=100.0, clock=clock)
    assert lim.take("a", 60) == 0.0 and lim.level("a") == 40.0
    lim.refund("a", 60)
    assert len(lim) == 0  # full again: the same as absent
    assert lim.take("a", 80) == 0.0
    assert lim.take_all({"b": 10, "a": 30}) == ("a", 1.0)  # a holds 20: refused, b untouched
    assert lim.level("b") == 100.0
    lim.refund("a", 500)  # a refund never lifts a bucket above full
    assert lim.level("a") == 100.0
    # a batch beyond the burst is admitted on a full bucket and takes all its samples: a debt
    assert lim.take("c", 1000) == 0.0 and lim.level("c") == -900.0
    refused = lim.take_all({"c": 1})  # repaid before c is admitted again: (1 + 900) / 10 s
    assert refused is not None and refused[0] == "c" and refused[1] == pytest.approx(90.1)
    clock.now += 5
    assert lim.take("d", 1) == 0.0
    assert lim.level("c") == -850.0 and "c" in lim._buckets  # still in debt: kept whatever the sweeps
    clock.now += 6
    lim.take("e", 1)  # a sweep is due (10 s period): c still repays, kept
    assert "c" in lim._buckets and lim.level("c") == -790.0
    clock.now += 89
    lim.take("f", 1)  # the next sweep: c is full again (-790 + 890 s × 10), evicted
    assert "c" not in lim._buckets and lim.level("c") == 100.0
    assert lim.take("g", 300) == 0.0 and lim.level("g") == -200.0
    lim.refund("g", 120)  # one line of the take given back (a duplicate): exactly its samples
    assert lim.level("g") == -80.0


def test_limiter_table_stays_bounded_under_churn() -> None:
    """100,000 producers, each seen once, 100 every simulated half second (each bucket is full
    again 10 ms after its take): the table holds about twice the producers of one sweep period."""
    clock = _Clock()
    lim = RateLimiter(rate=1000.0, burst=1000.0, clock=clock)
    peak = 0
    for i in range(100_000):
        if i % 100 == 0:
            clock.now += 0.5
        assert lim.take(f"p{i}", 10) == 0.0
        peak = max(peak, len(lim))
    assert peak <= 2 * 300 + 64, peak  # ≤ 300 names per 1.5 s (the 1 s period plus a step)
