"""Which HTTP answers dead-letter and which keep the data: the agent's real buffer, forwarder and
HTTP uplink behind a real HTTP front (a stand-in for a reverse proxy, a captive portal, an
ingress without a backend) in front of the real ingest.

Contract (``edge_agent/uplinks/http/README.md``): only ingest's own verdict on a batch's content
(400/413/422 as ingest's problem+json, or per-sample rejections in its ``BatchResult``) dead-
letters; an answer that is not ingest's — an HTML 404 or 413, a 405, a redirect, a 200 page that
is not ingest's result — keeps every batch in the buffer, is counted in ``refused`` (exported as
``zhizao_agent_uplink_refused_total{reason}``) and logged as an ERROR once; once the front
passes requests to ingest, everything arrives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
from ingest.settings import Settings
from ingest.testing import run_server, server_settings
from tests.edge_agent.test_buffer import samples
from tests.support.forwarding import drain
from tests.support.waiting import eventually
from zhizao import wire
from zhizao.backoff import Backoff
from zhizao.model import Batch

UPLINK_LOG = "edge_agent.uplinks.http.uplink"
HINT = "is this the zhizao ingest?"


@dataclass(frozen=True)
class Answer:
    """What the front answers to every POST instead of passing it to ingest."""

    status: int
    content_type: str
    body: bytes
    paths: tuple[str, ...] = ()
    """Only these paths (all when empty); the others are passed to ingest."""


class Front:
    """A real HTTP server in a thread: passes POSTs to ingest (``target``) unchanged — a reverse
    proxy — except those ``answer`` covers, which it answers itself. ``hits`` counts those."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.answer: Answer | None = None
        self.hits = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                answer = front.answer
                if answer is not None and (not answer.paths or self.path in answer.paths):
                    front.hits += 1
                    status, ctype, content = answer.status, answer.content_type, answer.body
                else:
                    keep = ("content-type", "content-encoding", "authorization")
                    resp = httpx.post(front.target + self.path, content=body, timeout=10,
                                      headers={k: v for k, v in self.headers.items() if k.lower() in keep})
                    status, content = resp.status_code, resp.content
                    ctype = resp.headers.get("content-type", "")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(content)))
                if 300 <= status < 400:
                    self.send_header("Location", "https://elsewhere.example/")
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[str]:
    """The real ingest (DuckDB store), its base URL."""
    with run_server(server_settings(tmp_path)) as url:
        yield url


@pytest.fixture
def front(ingest: str) -> Iterator[Front]:
    f = Front(ingest)
    try:
        yield f
    finally:
        f.close()


def written(ingest: str) -> float:
    """Samples ingest stored (its ``zhizao_ingest_samples_written_total``, all sources)."""
    text = httpx.get(f"{ingest}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("zhizao_ingest_samples_written_total{"))


HTML = "text/html; charset=utf-8"
INGEST_405 = orjson.dumps({"type": "about:blank", "title": "Method not allowed", "status": 405,
                           "detail": "Method Not Allowed"})



@pytest.mark.parametrize(("bulk", "answer", "reason"), [
    pytest.param(True, Answer(404, HTML, b"<html><h1>404 Not Found</h1>nginx</html>"), "HTTP 404",
                 id="bulk-html-404"),
    pytest.param(False, Answer(404, HTML, b"<html><h1>404 Not Found</h1>nginx</html>"), "HTTP 404",
                 id="single-html-404"),
    pytest.param(False, Answer(405, "application/problem+json", INGEST_405), "HTTP 405",
                 id="single-ingest-405-not-a-verdict"),
    pytest.param(False, Answer(413, HTML, b"<html>413 Request Entity Too Large</html>"), "HTTP 413",
                 id="single-proxy-413"),
    pytest.param(True, Answer(413, HTML, b"<html>413 Request Entity Too Large</html>"), "HTTP 413",
                 id="bulk-proxy-413"),
    pytest.param(False, Answer(302, HTML, b""), "HTTP 302", id="single-redirect"),
    pytest.param(False, Answer(200, HTML, b"<html>Welcome! Please log in</html>"), "HTTP 200 not ingest",
                 id="single-html-200"),
    pytest.param(False, Answer(200, "application/json", b'{"ok": true}'), "HTTP 200 not ingest",
                 id="single-json-200-not-a-batch-result"),
    pytest.param(True, Answer(200, HTML, b"<html>Welcome! Please log in</html>"), "HTTP 200 not ingest",
                 id="bulk-html-200"),
])

async def test_an_answer_not_from_ingest_keeps_every_batch(
    tmp_path: Path, ingest: str, front: Front, caplog: pytest.LogCaptureFixture,
    bulk: bool, answer: Answer, reason: str,
) -> None:
    """Nothing is dead-lettered or acked while the front answers in ingest's stead; the refusal is
    counted and logged once; once the front passes requests to ingest, every sample arrives."""
    caplog.set_level(logging.INFO, logger=UPLINK_LOG)
    front.answer = answer
    dl = DeadLetter(tmp_path / "dead.jsonl")
    cfg = HttpUplinkConfig(url=front.url, bulk=bulk, backoff_initial_s=0.02, backoff_cap_s=0.05)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf, HttpUplink(cfg) as up:
        fwd = Forwarder(buf, up, dl, max_items=100, linger=0.02, backoff=Backoff(initial=0.02, cap=0.05))
        await buf.put(samples(300))
        task = asyncio.create_task(fwd.run())
        try:
            await eventually(lambda: front.hits >= 5 or buf.stats.backlog_samples < 300, 30, "5 answers")
            assert fwd.stats.dead_lettered == 0 and dl.read() == [], "nothing dead-lettered"
            assert buf.stats.backlog_samples == 300, "nothing acked"
            assert fwd.stats.sent_samples == 0 and not fwd.stats.up
            await eventually(lambda: up.refused[reason] >= 3, 30, f"3 refusals counted as {reason!r}")
            assert set(up.refused) == {reason}
            assert buf.stats.backlog_samples == 300 and dl.read() == [], "still nothing acked"
            errors = [r for r in caplog.records if r.levelno == logging.ERROR and HINT in r.getMessage()]
            assert len(errors) == 1, "logged once per change, not once per retry"
            assert front.url in errors[0].getMessage() and str(answer.status) in errors[0].getMessage()

            front.answer = None  # the proxy is fixed: requests reach ingest
            await eventually(lambda: buf.stats.backlog_samples == 0, 30, "the buffer drained")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert fwd.stats.sent_samples == 300 and fwd.stats.dead_lettered == 0 and dl.read() == []
    assert await asyncio.to_thread(written, ingest) == 300, "every sample stored once"
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert (up.bulk is not None) == bulk, "bulk stays on: no ingest answered without the bulk endpoint"


async def test_no_bulk_endpoint_behind_the_front_falls_back_to_one_post_per_batch(
    tmp_path: Path, ingest: str, front: Front,
) -> None:
    """A front routing only ``/api/v1/batches`` (or an ingest before bulk): the bulk endpoint's
    HTML 404 switches the uplink to one POST per batch since ingest answers there; every batch
    arrives, none is dead-lettered."""
    front.answer = Answer(404, HTML, b"<html>404</html>", paths=("/api/v1/batches/bulk",))
    dl = DeadLetter(tmp_path / "dead.jsonl")
    async with (
        SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf,
        HttpUplink(HttpUplinkConfig(url=front.url)) as up,
    ):
        assert up.bulk is not None
        fwd = Forwarder(buf, up, dl, max_items=100, linger=0.02)
        await buf.put(samples(500))
        await drain(fwd, buf)
        assert up.bulk is None and front.hits == 1, "one probe of the bulk endpoint, then one POST per batch"
        assert not up.refused
    assert fwd.stats.sent_samples == 500 and fwd.stats.dead_lettered == 0 and dl.read() == []
    assert await asyncio.to_thread(written, ingest) == 500


async def test_ingest_verdicts_on_content_still_dead_letter(tmp_path: Path) -> None:
    """``bulk = false``, real ingest (``max_samples_per_batch = 50``): a bad envelope (400), a
    batch too large (413) and a bad sample (rejected by index) are ingest's verdicts — dead-
    lettered and acked, counted as no refusal; the good batch is stored."""
    base = server_settings(tmp_path).model_dump(mode="json")
    settings = Settings.model_validate({**base, "limits": {**base["limits"], "max_samples_per_batch": 50}})
    ok = wire.sample_to_dict(samples(1)[0])
    bad_doc = {"format": "zhizao.batch", "version": 7, "producer": "agent-1", "batch_id": "bad", "seq": 2,
               "samples": [ok]}
    partial_doc = {"format": "zhizao.batch", "version": 1, "producer": "agent-1", "batch_id": "partial",
                   "seq": 3, "samples": [ok, {**ok, "ts": "x"}]}
    records = [
        EncodedBatch.of_batch(Batch("agent-1", "good", 1, tuple(samples(10, 100)))),
        EncodedBatch.record("agent-1", "bad", 2, 1, orjson.dumps(bad_doc)),
        EncodedBatch.record("agent-1", "partial", 3, 2, orjson.dumps(partial_doc)),
        EncodedBatch.of_batch(Batch("agent-1", "large", 4, tuple(samples(60, 200)))),
    ]
    dl = DeadLetter(tmp_path / "dead.jsonl")
    with run_server(settings) as url:
        async with (
            SqliteBuffer(tmp_path / "b.sqlite", "gw-1") as buf,
            HttpUplink(HttpUplinkConfig(url=url, bulk=False)) as up,
        ):
            fwd = Forwarder(buf, up, dl, max_items=1000, linger=0.02)
            await buf.put_records(records)
            await drain(fwd, buf)
            assert not up.refused
        stored = await asyncio.to_thread(written, url)
    by_batch: dict[str, list[str]] = {}
    for r in dl.read():
        by_batch.setdefault(r["batch_id"], []).append(r["reason"])
    assert sorted(by_batch) == ["bad", "large", "partial"]
    assert len(by_batch["bad"]) == 1 and "400" in by_batch["bad"][0]
    assert len(by_batch["large"]) == 60 and "413" in by_batch["large"][0]
    assert len(by_batch["partial"]) == 1 and by_batch["partial"][0].startswith("ts")
    assert stored == 11 and fwd.stats.sent_batches == 4


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_a_duplicate_answer_that_does_not_add_up_is_an_id_conflict(
    ingest: str, bulk: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Real ingest: a batch sent again is a duplicate that adds up (10 accepted of 10) — no alarm;
    OTHER samples under an id ingest stored before (5 samples, ingest says 10 accepted) were not
    stored: counted in ``id_conflicts`` and one ERROR naming the batch."""
    caplog.set_level(logging.ERROR, logger="edge_agent.uplinks.http.uplink")
    first = Batch("agent-1", "nonce-0000000001", 1, tuple(samples(10)))
    other = Batch("agent-1", "nonce-0000000001", 1, tuple(samples(5, 100)))
    async with HttpUplink(HttpUplinkConfig(url=ingest, bulk=bulk)) as up:
        async def send(batch: Batch) -> None:
            if bulk:
                assert await up.send_bulk([EncodedBatch.of_batch(batch)]) == [None]
            else:
                await up.send(batch)

        await send(first)
        await send(first)
        assert up.id_conflicts == 0 and not caplog.records
        await send(other)
        assert up.id_conflicts == 1
    (error,) = [r.getMessage() for r in caplog.records]
    assert "agent-1/nonce-0000000001" in error and "10 sample(s) accepted" in error
    assert "NOT stored" in error
    assert await asyncio.to_thread(written, ingest) == 10
