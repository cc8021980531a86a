"""A line-protocol write still pending at ``storage.write_timeout_s`` (review 82, helper-82's
t12_timeout_dup.py): it was answered 503 "nothing was stored" and left running, so it committed
anyway — and line protocol has no batch id, so the client's retry stored every value a second time
(influxdb-client's batching writer left 12,000 rows of 2,000 points). Now the write is stopped
where the store can stop it (DuckDB: out of its queue, or its transaction interrupted and rolled
back) and its real outcome awaited: 503 "nothing was stored" only when nothing was, a success when
it committed first. On InfluxDB (an HTTP write cannot be recalled) the outcome is awaited, and a
write influxd has not answered is a 503 saying it may still be stored. Real uvicorn, DuckDB, influxd.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from ingest import service as ingest_service
from ingest.app import create_app
from ingest.storage.base import BatchKey, SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post, stored_count
from tests.ingest.test_influx_write_timeouts import _Stopped
from tests.support.servers import InfluxDB
from zhizao.errors import StoreUnavailable

LP = {"content-type": "text/plain; charset=utf-8"}
STOP_GRACE_S = 2.0
"""``ingest.service.STOP_GRACE_S`` (read there by the tests; this value the old code lacked)."""


def test_the_stop_grace() -> None:
    assert getattr(ingest_service, "STOP_GRACE_S", None) == STOP_GRACE_S


def _lines(machine: str, n: int = 2000) -> str:
    return "\n".join(f"telemetry,site=plant,area=a,line=l,machine={machine} x={i} {1764002000 + i}"
                     for i in range(n))


def _count(c: httpx.Client, machine: str) -> int:
    return stored_count(c, f"plant/a/l/{machine}")


def _store(app: object) -> DuckDBStore:
    store = app.state.service.store  # type: ignore[attr-defined]
    assert isinstance(store, DuckDBStore)
    return store


def test_a_write_queued_past_the_timeout_is_not_stored_and_its_retry_stored_once(tmp_path: Path) -> None:
    """The single writer is busy past the timeout: the write is taken out of the queue (old: it
    committed after its 503, and the retry made a second copy)."""
    settings = server_settings(tmp_path)
    settings.storage.write_timeout_s = 0.3
    settings.storage.retry_after_s = 1
    app = create_app(settings)
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        store = _store(app)
        blocker = store._writer.submit(time.sleep, 1.0)
        r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines("m1"), headers=LP)
        assert_problem(r, 503, "nothing was stored", "did not commit within 0.3 s")
        assert r.headers["retry-after"] == "1"
        blocker.result()
        time.sleep(0.5)  # what would have committed late has had its chance
        assert _count(c, "m1") == 0
        r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines("m1"), headers=LP)
        assert r.status_code == 204, r.text
        assert _count(c, "m1") == 2000
        metrics = c.get("/metrics").text
        assert 'zhizao_ingest_samples_written_total{source="line_protocol"} 2000.0' in metrics


def test_a_tiny_write_timeout_answers_the_truth_and_a_retrying_client_stores_one_copy(tmp_path: Path) -> None:
    """As the repro: write_timeout_s 0.002, 2,000 points per write. Every 503 leaves 0 rows of
    that write, every success exactly one copy; a client retrying its 503s ends with one copy
    (or none, if every attempt was stopped: never two)."""
    settings = server_settings(tmp_path)
    settings.storage.write_timeout_s = 0.002
    settings.storage.retry_after_s = 1
    app = create_app(settings)
    answers: list[int] = []
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        for k in range(6):
            machine = f"t{k}"
            r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines(machine), headers=LP)
            assert r.status_code in (204, 503), r.text
            answers.append(r.status_code)
            time.sleep(0.3)  # a write left running (old code) commits meanwhile
            if r.status_code == 503:
                assert_problem(r, 503, "nothing was stored")
                assert _count(c, machine) == 0, f"503 'nothing was stored', yet {machine} was stored"
            else:
                assert _count(c, machine) == 2000
        # a retrying client (as influxdb-client's writer, which retries 503): one copy at most
        ok = False
        for _ in range(8):
            r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines("retry"), headers=LP)
            if r.status_code == 204:
                ok = True
                break
            assert r.status_code == 503, r.text
            time.sleep(0.05)
        time.sleep(0.3)
        assert _count(c, "retry") == (2000 if ok else 0)
    assert answers  # (the mix of 204 and 503 depends on the machine's speed)


def test_a_retrying_client_against_a_store_slow_at_first_ends_with_one_copy(tmp_path: Path) -> None:
    """The store is slow for the first attempts (its writer busy), then not: the client's retries
    end in one 204 and exactly one copy (old: each 503'd attempt committed later, 3 copies)."""
    settings = server_settings(tmp_path)
    settings.storage.write_timeout_s = 0.2
    settings.storage.retry_after_s = 1
    app = create_app(settings)
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        store = _store(app)
        blocker = store._writer.submit(time.sleep, 0.9)
        statuses = []
        for _ in range(40):
            r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines("r1", 500), headers=LP)
            statuses.append(r.status_code)
            if r.status_code == 204:
                break
            time.sleep(0.05)
        blocker.result()
        assert statuses[0] == 503 and statuses[-1] == 204, statuses
        time.sleep(0.5)
        assert _count(c, "r1") == 500, statuses


def test_a_transaction_running_at_the_timeout_is_interrupted_and_rolled_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit is inside a long DuckDB statement when the timeout comes: ``interrupt()`` ends it
    within the grace (not after the statement's many seconds), the transaction is rolled back —
    503 "nothing was stored" is true — and the store writes on afterwards."""
    settings = server_settings(tmp_path)
    settings.storage.write_timeout_s = 0.3
    app = create_app(settings)
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=60) as c:
        store = _store(app)
        writer = store.writer
        writer.catalogue_interval_s = 0.0  # the catalogue upsert runs inside every commit
        upsert = writer._upsert_catalogue

        def slow_upsert(tables: object) -> None:
            writer.con.execute("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3").fetchall()

        monkeypatch.setattr(writer, "_upsert_catalogue", slow_upsert)
        t0 = time.monotonic()
        r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines("i1", 100), headers=LP)
        took = time.monotonic() - t0
        assert_problem(r, 503, "nothing was stored", "stopped")
        assert "INTERRUPT" in r.json()["detail"] or "Interrupt" in r.json()["detail"], r.json()["detail"]
        assert took < 0.3 + STOP_GRACE_S, took
        monkeypatch.setattr(writer, "_upsert_catalogue", upsert)
        assert _count(c, "i1") == 0
        r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines("i1", 100), headers=LP)
        assert r.status_code == 204, r.text
        assert _count(c, "i1") == 100


def test_stopping_a_write_requeues_the_others_of_its_group(tmp_path: Path) -> None:
    """A batch (with its id) sharing the stopped write's group commit is not failed by the stop:
    it is committed in the next group."""

    async def go() -> tuple[object, object, int]:
        async with DuckDBStore(tmp_path / "g.duckdb") as store:
            busy = store._writer.submit(time.sleep, 0.3)  # both writes queue into one group
            lp = SampleFrame.from_samples(batch("x", n=5, signal="lp").samples)
            keyed = SampleFrame.from_samples(batch("b-1", n=7).samples)
            a = asyncio.ensure_future(store.write(lp))
            b = asyncio.ensure_future(store.write(keyed, BatchKey("agent-1", "b-1")))
            await asyncio.sleep(0.05)
            assert store._group is not None and len(store._group.requests) == 2
            store.abort_writes([lp])
            done = await asyncio.gather(a, b, return_exceptions=True)
            busy.result()
            rows = store.con.execute("SELECT count(*) FROM samples").fetchall()[0][0]
            return done[0], done[1], int(rows)

    stopped, stored, rows = asyncio.run(go())
    assert isinstance(stopped, StoreUnavailable) and "nothing of it was committed" in str(stopped)
    assert not isinstance(stored, BaseException) and stored.accepted == 7 and not stored.duplicate  # type: ignore[attr-defined]
    assert rows == 7


def test_a_write_stopped_too_late_answers_its_commit(tmp_path: Path) -> None:
    """A stop that comes after the COMMIT changes nothing: the write answers success (the service
    then answers 204, as the store holds it)."""

    async def go() -> tuple[int, int]:
        async with DuckDBStore(tmp_path / "late.duckdb") as store:
            frame = SampleFrame.from_samples(batch("x", n=5).samples)
            result = await store.write(frame)
            store.abort_writes([frame])
            rows = store.con.execute("SELECT count(*) FROM samples").fetchall()[0][0]
            # the interrupt flag of a stop on an idle connection does not leak into the next write
            again = await store.write(SampleFrame.from_samples(batch("y", n=3, signal="other").samples))
            return result.accepted + again.accepted, int(rows)

    accepted, rows = asyncio.run(go())
    assert (accepted, rows) == (8, 5)


def test_on_influxdb_an_unanswered_write_is_not_called_unstored(tmp_path: Path, influxdb: InfluxDB) -> None:
    """An HTTP write in flight cannot be recalled: influxd (stopped) stores it when it resumes. The
    503 says it may still be stored (old: "nothing was stored", then it was). A resend stores no
    copy: influxd overwrites a point with the same measurement, tags and timestamp."""
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    settings.storage.influxdb.timeout_s = 60
    settings.storage.write_timeout_s = 0.5
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert post(c, batch("warm")).status_code == 200  # the dedup records are loaded
        with _Stopped(influxdb):
            t0 = time.monotonic()
            r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines("f1", 50), headers=LP)
            took = time.monotonic() - t0
        assert_problem(r, 503, "may still be stored")
        assert "nothing was stored" not in r.json()["detail"]
        assert took >= 0.5 + STOP_GRACE_S - 0.1, took  # its outcome was awaited for the grace
        deadline = time.monotonic() + 20
        while _count(c, "f1") < 50 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _count(c, "f1") == 50  # it was stored after all
        r = c.post("/api/v2/write", params={"precision": "s"}, content=_lines("f1", 50), headers=LP)
        assert r.status_code == 204, r.text
        assert _count(c, "f1") == 50  # the resend overwrote the same points


def test_on_influxdb_a_write_answered_within_the_grace_is_a_success(tmp_path: Path,
                                                                    influxdb: InfluxDB) -> None:
    """influxd answers after the write timeout but within the grace: the write stored is answered
    204, not 503 (old: 503 "nothing was stored" for stored data)."""
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    settings.storage.influxdb.timeout_s = 60
    settings.storage.write_timeout_s = 0.3
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert post(c, batch("warm")).status_code == 200
        process = influxdb.process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        try:
            async def go() -> httpx.Response:
                async with httpx.AsyncClient(base_url=url, timeout=30) as ac:
                    send = asyncio.ensure_future(ac.post("/api/v2/write", params={"precision": "s"},
                                                         content=_lines("g1", 50), headers=LP))
                    await asyncio.sleep(0.3 + STOP_GRACE_S / 2)
                    process.send_signal(signal.SIGCONT)
                    return await send

            r = asyncio.run(go())
        finally:
            process.send_signal(signal.SIGCONT)
        assert r.status_code == 204, r.text
        assert _count(c, "g1") == 50


def test_duckdb_interrupt_semantics_the_stop_relies_on(tmp_path: Path) -> None:
    """DuckDB's ``interrupt()`` on an idle connection is lost (so a stop after the COMMIT cannot
    fail the next write), and a rolled-back interrupted transaction leaves nothing."""
    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    con.execute("CREATE TABLE t (x BIGINT)")
    con.interrupt()
    assert con.execute("SELECT 1").fetchall() == [(1,)]
    con.close()
