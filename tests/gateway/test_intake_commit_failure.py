"""The gateway's intake when the buffer cannot commit (its database full: SQLite's own SQLITE_FULL,
``tests/edge_agent/disk_full.py``), on a real Mosquitto: nothing is acknowledged, the connection
ends (a broker resends unacknowledged messages only on a new connection: staying connected stalled
the session silently once its in-flight window filled), and after the reconnect the broker's
redeliveries are stored once the buffer has room — every message once, none lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from edge_agent.supervisor import supervise
from tests.edge_agent.disk_full import fill, free, record_samples
from tests.edge_agent.test_mqtt_connector import Publisher, acme
from tests.gateway.test_raw_redelivery import TOPIC, _config, _process, _subscribed
from tests.support.servers import Mosquitto
from tests.support.sinks import HeldCommits, published_across_a_full_disk, redelivered_while_a_commit_fails
from tests.support.waiting import eventually
from zhizao.backoff import Backoff


async def test_a_failed_commit_ends_the_session_and_the_broker_redelivers(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.intake")
    cfg = _config(tmp_path, mosquitto)
    async with cfg.buffer.build(cfg.id) as buf:
        await _subscribed(cfg, buf)
        intake = _process(cfg)
        task = asyncio.create_task(supervise(intake, buf, backoff=Backoff(initial=0.1, cap=0.5)))
        await eventually(lambda: intake.stats.connected, 15)
        pub = Publisher(mosquitto)
        got = await published_across_a_full_disk(
            lambda i: pub.publish(TOPIC, acme(i)), lambda: record_samples(buf),
            lambda: fill(buf, records=True), lambda: free(buf), lambda: intake.counts.uncommitted >= 1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.close()
    assert got == [200.0 + i for i in range(30)], "each value once, none lost"
    assert intake.stats.duplicates_skipped == 0 and intake.stats.commit_failures == intake.counts.uncommitted
    assert intake.stats.reconnects >= 1, "the failed commit ended the session"
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.intake"]
    errors = [m for lvl, m in lines if lvl == logging.ERROR]
    assert len(errors) == 1 and "ending the broker session" in errors[0], errors
    assert any(lvl == logging.WARNING and "succeed again" in m for lvl, m in lines)


async def test_a_redelivery_waiting_on_a_commit_that_fails_is_redelivered_again_and_stored(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Raw messages whose commits are slow; the connection drops and the broker redelivers them
    (DUP) on the new connection while the commits are pending: they wait on them. The commits then
    fail: the new connection is ended too, so the broker redelivers once more and they are stored —
    every message once. The old code ended only the original (gone) connection: messages 3-7 were
    never acknowledged nor stored, holding the session's Receive Maximum."""
    cfg = _config(tmp_path, mosquitto)
    async with cfg.buffer.build(cfg.id) as buf:
        await _subscribed(cfg, buf)
        intake = _process(cfg)
        sink = HeldCommits(buf)

        def blip() -> None:
            assert intake.session._conn is not None
            intake.session._conn.end("network blip")

        task = asyncio.create_task(supervise(intake, sink, backoff=Backoff(initial=0.1, cap=0.3)))
        pub = Publisher(mosquitto)
        try:
            await eventually(lambda: intake.stats.connected, 15)
            got = await redelivered_while_a_commit_fails(
                lambda i: pub.publish(TOPIC, acme(i)), sink, lambda: record_samples(buf),
                lambda: len(sink.held) == 5, blip, lambda: intake.stats.duplicates_skipped)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            pub.close()
    assert got == [200.0 + i for i in range(10)], f"each value once, none lost: {got}"
