"""The dead-letter file keeps ``<path>`` and ``<path>.1``: what a rotation overwrites is counted,
by kind, logged and exported — nothing dead-lettered disappears without a trace."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from edge_agent.buffer import SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.metrics import AgentCollector, AgentMetrics
from zhizao.model import Batch


class _Nowhere:
    name = "nowhere"

    async def __aenter__(self) -> _Nowhere:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, batch: Batch) -> None:
        raise AssertionError("not used")


def _on_disk(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in (path, path.with_name(path.name + ".1")):
        if p.exists():
            for line in p.read_bytes().splitlines():
                kind = orjson.loads(line)["kind"]
                out[kind] = out.get(kind, 0) + 1
    return out


async def test_items_a_rotation_overwrites_are_counted_logged_and_exported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    dl = DeadLetter(path, max_bytes=4000)
    with caplog.at_level(logging.WARNING, logger="edge_agent.deadletter"):
        for i in range(200):
            if i % 3:
                dl.write("rejected_sample", "bad unit", batch_id="b-1", index=i, sample={"value": i})
            else:
                dl.write("mqtt_payload", "not JSON", topic="plant1/x", payload=b"\xff" * 20)
    on_disk = _on_disk(path)
    assert sum(dl.counts.values()) == 200
    assert sum(dl.overwritten.values()) > 0, "the rotations overwrote older items"
    for kind in ("rejected_sample", "mqtt_payload"):
        assert dl.counts[kind] == on_disk.get(kind, 0) + dl.overwritten[kind], kind
    warnings = [r.getMessage() for r in caplog.records if "overwritten and lost" in r.getMessage()]
    assert warnings and all(r.levelno == logging.WARNING for r in caplog.records)
    assert sum(int(w.split(" older items")[0].rsplit(" ", 1)[1]) for w in warnings) == sum(
        dl.overwritten.values())

    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf:
        fwd = Forwarder(buf, _Nowhere(), dl)
        text = AgentMetrics(AgentCollector(buf, fwd, [], dl, {"version": "test"})).render().decode()
    for kind in ("rejected_sample", "mqtt_payload"):
        line = f'zhizao_agent_dead_letters_overwritten_total{{kind="{kind}"}} {float(dl.overwritten[kind])}'
        assert line in text, line
    assert 'zhizao_agent_forwarder_buffer_failures_total{op="ack"} 0.0' in text


def test_the_first_rotation_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dl = DeadLetter(tmp_path / "dead.jsonl", max_bytes=1000)
    while not (tmp_path / "dead.jsonl.1").exists():
        dl.write("rejected_sample", "x", index=0)
    assert not dl.overwritten and "overwritten" not in caplog.text
