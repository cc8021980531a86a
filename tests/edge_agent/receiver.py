"""A real HTTP receiver for tests: FastAPI on uvicorn in a thread, speaking ingest's batch API.

Decodes with ``zhizao.wire``, deduplicates on ``(producer, batch_id)``, and can be told to
answer 503/429 with ``Retry-After``, to reject samples of given signals (partial write), and be
stopped/started on the same port. Answers have ingest's shapes: ``BatchResult`` JSON on success,
``application/problem+json`` on errors. It has no bulk endpoint (an ingest before bulk).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.support.ports import free_port, wait_listening
from zhizao import wire
from zhizao.errors import WireFormatError
from zhizao.model import Sample


@dataclass
class ReceiverState:
    batches: dict[tuple[str, str], tuple[Sample, ...]] = field(default_factory=dict)
    posts: Counter[tuple[str, str]] = field(default_factory=Counter)
    fail_status: int | None = None
    retry_after: str = "1"
    reject_signals: set[str] = field(default_factory=set)
    token: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def samples(self) -> list[Sample]:
        with self.lock:
            return [s for b in self.batches.values() for s in b]


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answered as ingest does: RFC 9457 problem+json."""
    return JSONResponse({"type": "about:blank", "title": "Error", "status": status, "detail": detail},
                        status_code=status, headers=headers, media_type="application/problem+json")


def build_app(state: ReceiverState) -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/batches")
    async def post_batch(request: Request) -> Response:
        if state.token and request.headers.get("authorization") != f"Bearer {state.token}":
            return problem(401, "bad token")
        if state.fail_status is not None:
            return problem(state.fail_status, "try later", {"Retry-After": state.retry_after})
        body = await request.body()
        try:
            batch, bad = wire.decode_batch_lenient(body)
        except WireFormatError as exc:
            return problem(400, str(exc))
        rejected = dict(bad)
        kept: list[Sample] = []
        index = 0
        for s in batch.samples:
            while index in rejected:
                index += 1
            if s.signal in state.reject_signals:
                rejected[index] = f"signal: {s.signal} not allowed"
            else:
                kept.append(s)
            index += 1
        key = (batch.producer, batch.batch_id)
        with state.lock:
            state.posts[key] += 1
            duplicate = key in state.batches
            if not duplicate:
                state.batches[key] = tuple(kept)
        return JSONResponse(
            {
                "producer": batch.producer,
                "batch_id": batch.batch_id,
                "seq": batch.seq,
                "accepted": len(kept),
                "duplicate": duplicate,
                "rejected": [{"index": i, "reason": r} for i, r in sorted(rejected.items())],
            }
        )

    return app


class Receiver:
    """``start()``/``stop()`` a uvicorn server on a fixed port; state survives restarts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = ReceiverState()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            build_app(self.state), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server_serve()), daemon=True)
        self._thread.start()
        wait_listening(self.port)

    async def _server_serve(self) -> None:
        assert self._server is not None
        await self._server.serve()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = None
        self._thread = None
        time.sleep(0.05)
