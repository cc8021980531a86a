"""Review 57 (cosmetic): a write answered 503 at ``write_timeout_s`` is left running as a task of
its own (``IngestService._running``); when it then fails (the store is down, which is why it was
slow) nobody retrieves its exception unless a rate-limit charge's callback happens to: with the
rate limit off (the default) asyncio logs "Task exception was never retrieved" at ERROR, with a
traceback, for every such request. The old code (``gather(..., return_exceptions=True)``) did not.
Real uvicorn + DuckDB, its single writer thread kept busy, then its commit failing.

Now every store write's outcome is read by a done-callback, and a write the caller gave up on that
then fails is counted as a store error and logged once, at WARNING, naming the store and the reason."""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from ingest.app import create_app
from ingest.storage.duckdb.store import DuckDBStore
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post


@pytest.mark.parametrize("rate", [None, 1000.0], ids=["no-rate-limit", "rate-limit"])
def test_a_timed_out_write_that_fails_later_logs_no_unretrieved_task_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        rate: float | None) -> None:
    caplog.set_level(logging.ERROR)  # (not WARNING: a captured 503 record would keep the task alive)
    caplog.set_level(logging.WARNING, logger="ingest.service")
    settings = server_settings(tmp_path)
    settings.storage.write_timeout_s = 0.3
    settings.limits.rate_samples_per_s = rate
    app = create_app(settings)
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        store = app.state.service.store
        assert isinstance(store, DuckDBStore)

        def failing(group: object) -> object:
            raise duckdb.IOException("simulated: disk gone")

        monkeypatch.setattr(store.writer, "commit", failing)
        blocker = store._writer.submit(time.sleep, 1.0)
        assert_problem(post(c, batch("t-1")), 503, "did not commit within 0.3 s")
        blocker.result()
        time.sleep(0.5)  # the queued commit runs and fails
        for _ in range(3):
            gc.collect()
            time.sleep(0.1)
        errors = c.get("/metrics").text
    noise = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not noise, noise
    late = [r for r in caplog.records if r.name == "ingest.service"]
    assert [r.levelno for r in late] == [logging.WARNING], [r.getMessage() for r in late]
    message = late[0].getMessage()
    assert "duckdb" in message and "0.3 s write timeout" in message and "disk gone" in message, message
    assert not late[0].exc_info  # one line, no traceback
    # the 503 at the timeout, then the write's own failure
    assert 'zhizao_ingest_store_errors_total{operation="write"} 2.0' in errors, errors
