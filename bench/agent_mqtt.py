"""Benchmark: the edge agent's MQTT connector into its durable buffer, vs a bare subscriber.

    python -m bench.agent_mqtt [--quick | --smoke] [--messages N] [--rounds R] [--protocol 5|3.1.1]
                               [--inflight K]

Measures how fast :class:`edge_agent.connectors.mqtt.MqttConnector` collects vendor MQTT
messages into the agent's SQLite buffer, against the raw ceiling of the same broker measured in
the same run, and what the per-message digest marks (``mqtt:<name>:dup:<slot>``, committed with
every QoS >= 1 message's samples so that a DUP redelivery after ``kill -9`` is not stored twice)
cost. Full run: 200,000 messages per consumer, 3 rounds, medians; ``--quick``: 20,000 messages,
1 round (under a minute on an idle machine); ``--smoke``: 500 messages. The last line of output
is one JSON object; nothing is asserted, but ``exactly_once`` says whether every message's values
are in the buffer exactly once, ``target_met`` whether qos1 / raw >= 0.9 (the OPC UA collection
benchmark's target) and ``target_met_vs_glue`` whether qos1 / glue is.

Method:

* **Broker**: one real Mosquitto (``tests.support.servers.Mosquitto``: persistence,
  ``max_queued_messages 1000000``, ``max_inflight_messages 100``) on a free port in a temp dir,
  plus ``queue_qos0_messages true`` (QoS 0 messages queue for an offline session too) and
  ``autosave_interval 0`` (the helper's 1-second autosave would rewrite a queue of 200,000
  messages every second: that would measure the disk). ``--inflight`` sets
  ``max_inflight_messages``.
* **Payloads**: vendor ``acme`` (``simulator.mqtt.payloads.encode_payload``; the format of
  ``examples/workshop.toml``'s imm-3, mapped by ``edge_agent/connectors/mqtt/acme.toml``): 20
  injection-moulding machines, one message per machine per 1-second tick with 10 values (the
  kind's 8 analog signals, ``power_kw``, the text ``state``), a ``status`` object on every 50th;
  486 bytes each; all distinct.
* **Pre-published at full speed**: in each round every consumer below first opens its persistent
  session (clean start off; the agents by running the connector once, as a first start) and
  subscribes, then goes offline. A separate publisher process (paho, QoS 1, up to 1,000 in flight)
  then publishes the N messages as fast as the broker takes them and waits for every PUBACK: the
  broker holds all N queued for each session. Then each consumer in turn connects again (the
  order rotated by one each round, so that drift in the machine's load favours none); its clock
  runs from its connect until the N-th message is received (raw) or the N messages' samples are
  committed to the buffer (agent). No publisher competes for the CPU in that window and no
  consumer ever waits for one: the consumer (or the broker feeding it, equally for all) is the
  bottleneck.
* **Consumers** (MQTT 5 unless ``--protocol 3.1.1``):

  - ``raw``: a bare aiomqtt subscriber, QoS 1 (PUBACK at receipt), counting messages (keepalive
    600 s: with a deep backlog a PINGRESP waits behind it, see below) — the declared reference
    of the target;
  - ``glue``: a bare subscriber on the connector's own I/O
    (:class:`~edge_agent.connectors.mqtt.aio.PahoOnLoop`, buffered reads; paho acknowledging at
    receipt, counting messages, same keepalive): the fastest bare subscriber we have, so
    ``glue_ratio`` says what the connector's mapping, buffer and acknowledgement after commit
    cost against the I/O alone (aiomqtt reads unbuffered, which the connector does not since
    session 10);
  - ``qos1``: the agent's MQTT connector (QoS 1, the ``acme.toml`` mapping), run by the agent's
    supervisor (``edge_agent.supervisor.supervise``: reconnects with backoff), into the real
    ``SqliteBuffer`` built as the agent builds it (``BufferConfig`` defaults: group commit every
    0.1 s or 20,000 samples, ``synchronous=full``, WAL, ``group_series``); PUBACK after commit;
    one digest mark per message, committed with its samples;
  - ``qos1_nomarks``: the same through a sink that drops the marks (same QoS, same PUBACK after
    commit): the difference to ``qos1`` is the marks' cost, end to end;
  - ``qos0``: the connector subscribed at QoS 0 (no PUBACK, no marks).

  No forwarder runs (as during an uplink outage): the buffer only grows. An agent run ends when
  all samples are committed, or after 90 s without progress (QoS 0 messages lost in a reconnect
  never come); rates count the messages collected. Reconnects and skipped DUP redeliveries are
  reported: draining a deep backlog, paho's PINGREQ (sent every keepalive, 30 s, however busy
  the connection) can wait longer than the keepalive for its PINGRESP behind the queued
  messages, and paho then drops the connection. After each agent run
  the buffer file is read with ``sqlite3``: ``COUNT(*)`` and ``COUNT(DISTINCT data)`` of the
  sample rows must both be N x 10, the marks ``min(N, 4096)`` for ``qos1`` and 0 otherwise, and
  no payload may have failed to map (``exactly_once``).
* **The marks alone**: end-to-end rates on a shared 2-core machine move by more than the marks
  can cost, so the same messages' rows are also committed straight to the buffer's database
  (``Db.insert`` + ``Db.set_marks``, as ``SqliteBuffer`` commits them) in transactions as large
  as the ``qos1`` runs' were, without and with one mark per message (20,000 messages 5 times
  each, alternating, medians; quick: 10,000, 3 times): ``marks_us_per_message`` is the
  difference.

Figures: messages/s and values/s (values = messages x 10); CPU of this process per message
(``time.process_time``: the event loop — which runs paho's I/O for the connector since session 10 —
the buffer's thread, and for ``raw`` aiomqtt's paho); the ratios
``raw_ratio`` = qos1 / raw (the target's), ``glue_ratio`` = qos1 / glue,
``marks_cost_ratio`` = qos1 / qos0 (marks, PUBACKs and the acknowledgement-after-commit window
together), ``marks_only_ratio`` = qos1 / qos1_nomarks and
``qos0_raw_ratio`` = qos0 / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import add_smoke_flag, sized
from edge_agent.connectors.mqtt.dedup import DUP_SLOTS

VALUES_PER_MESSAGE = 10
MACHINES = 20
_SIGNALS = (  # simulator.kinds INJECTION_MOULDING's analog signals: (name, unit, typical value)
    ("melt_temp", "degC", 230.0),
    ("mould_temp", "degC", 55.0),
    ("hold_pressure", "bar", 600.0),
    ("injection_pressure", "bar", 1150.0),
    ("clamp_force", "kN", 1800.0),
    ("oil_temp", "degC", 45.0),
    ("motor_current", "A", 32.0),
    ("vibration_rms", "mm/s", 2.2),
    ("power_kw", "kW", 18.0),
)
_STALL_S = 90.0
_RAW_KEEPALIVE_S = 600  # a PINGRESP queued behind the backlog must not cut the ceiling's connection
_ACME = Path(__file__).resolve().parent.parent / "edge_agent" / "connectors" / "mqtt" / "acme.toml"


# -- publisher (child process) -------------------------------------------------------------
def _payloads(line: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` distinct acme messages of ``MACHINES`` machines on ``line``, one per machine per tick."""
    from simulator.mqtt.payloads import encode_payload, topic_for
    from zhizao.model import AssetPath, Quality

    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    assets = [AssetPath("plant1", "a1", line, f"imm-{m:02d}") for m in range(MACHINES)]
    units: dict[str, str | None] = {name: unit for name, unit, _ in _SIGNALS}
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        m, tick = i % MACHINES, i // MACHINES
        q = Quality.UNCERTAIN if i % 50 == 0 else Quality.GOOD
        values: list[tuple[str, Any, Quality]] = [
            (name, round(base * (1 + ((i * 7 + k * 13) % 101 - 50) / 1000), 3), q if k == 0 else Quality.GOOD)
            for k, (name, _, base) in enumerate(_SIGNALS)
        ]
        values.append(("state", "running", Quality.GOOD))
        out.append((topic_for("acme", assets[m]),
                    encode_payload("acme", assets[m], t0 + timedelta(seconds=tick), values, units)))
    return out


def _publish(port: int, line: str, n: int) -> None:
    """Publish ``n`` messages at QoS 1 as fast as the broker takes them; print a JSON summary."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    messages = _payloads(line, n)
    done = threading.Event()
    window = threading.Semaphore(10_000)  # paho keys queued messages by mid, which wraps at 65,535
    acked = 0

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        nonlocal acked
        acked += 1
        window.release()
        if acked == n:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{line}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = time.perf_counter()
    for topic, payload in messages:
        window.acquire()
        client.publish(topic, payload, qos=1)
    if not done.wait(600):
        raise SystemExit(f"publisher: only {acked} of {n} acknowledged")
    seconds = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    size = sum(len(p) for _, p in messages) / n
    print(json.dumps({"published": n, "seconds": seconds, "payload_bytes": size}), flush=True)


def _prepublish(port: int, line: str, n: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.agent_mqtt", "--child-publish", str(port), line, str(n)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- sessions --------------------------------------------------------------------------------
def _drop_session(port: int, client_id: str, protocol: str) -> None:
    """End the persistent session of ``client_id`` (clean start, expiry 0) so that later
    publishes are not queued for it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    v5 = protocol == "5"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=None if v5 else True,
                         protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311)
    client.connect("127.0.0.1", port, clean_start=True if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def _mapping(line: str) -> dict[str, Any]:
    """The shipped acme mapping (``acme.toml``), its topic and asset fixed to ``line``."""
    mapping: dict[str, Any] = tomllib.loads(_ACME.read_text())["connectors"]["mappings"][0]
    mapping.update(topic=f"acme/{line}/+machine/telemetry", asset=f"plant1/a1/{line}/{{machine}}")
    return mapping


# -- raw ceiling -----------------------------------------------------------------------------
def _raw_client(port: int, line: str, protocol: str, *, clean: bool) -> Any:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    ident = f"bench-raw-{line}"
    if protocol != "5":
        return aiomqtt.Client("127.0.0.1", port, identifier=ident, protocol=aiomqtt.ProtocolVersion.V311,
                              clean_session=clean, keepalive=_RAW_KEEPALIVE_S)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    return aiomqtt.Client("127.0.0.1", port, identifier=ident, protocol=aiomqtt.ProtocolVersion.V5,
                          clean_start=clean, properties=props, keepalive=_RAW_KEEPALIVE_S)


async def _raw_prime(port: int, line: str, protocol: str) -> None:
    async with _raw_client(port, line, protocol, clean=protocol == "5") as client:
        await client.subscribe(f"acme/{line}/+/telemetry", qos=1)  # returns at the SUBACK


async def _raw(port: int, line: str, n: int, protocol: str) -> dict[str, float]:
    count = 0
    cpu0, start = time.process_time(), time.perf_counter()
    async with _raw_client(port, line, protocol, clean=False) as client:
        async for _ in client.messages:
            count += 1
            if count >= n:
                break
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    await asyncio.to_thread(_drop_session, port, f"bench-raw-{line}", protocol)
    return {"seconds": seconds, "cpu": cpu, "collected": count}


# -- a bare subscriber on the connector's own glue -------------------------------------------
def _glue_client(line: str, protocol: str, on_message: Any = None) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    v5 = protocol == "5"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-glue-{line}",
                         protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
                         clean_session=None if v5 else False, reconnect_on_failure=False)
    if on_message is not None:
        client.on_message = on_message
    return client


async def _glue_session(port: int, line: str, protocol: str, on_message: Any, until: asyncio.Event) -> None:
    """One connection of a paho client driven by ``PahoOnLoop`` (buffered reads, as the connector),
    persistent session, subscribed at QoS 1 (PUBACK at receipt, by paho); closed once ``until`` is set."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge_agent.connectors.mqtt.aio import PahoOnLoop

    client = _glue_client(line, protocol, on_message)
    session = PahoOnLoop(client)
    v5 = protocol == "5"
    props = None
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
    try:
        await session.connect("127.0.0.1", port, keepalive=_RAW_KEEPALIVE_S,
                              clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props)
        client.subscribe(f"acme/{line}/+/telemetry", qos=1)
        closed = asyncio.ensure_future(session.wait_closed())
        stop = asyncio.ensure_future(until.wait())
        await asyncio.wait([closed, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if closed.done():
            closed.result()  # raises why the connection ended
        closed.cancel()
    finally:
        session.close()


async def _glue_prime(port: int, line: str, protocol: str) -> None:
    until = asyncio.Event()
    task = asyncio.create_task(_glue_session(port, line, protocol, None, until))
    await asyncio.sleep(0.5)  # CONNACK and SUBACK
    until.set()
    await task


async def _glue(port: int, line: str, n: int, protocol: str) -> dict[str, float]:
    count = 0
    done = asyncio.Event()

    def on_message(_c: Any, _u: Any, _msg: Any) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    cpu0, start = time.process_time(), time.perf_counter()
    task = asyncio.create_task(_glue_session(port, line, protocol, on_message, done))
    waiter = asyncio.create_task(done.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    waiter.cancel()
    await task  # a connection that ended early raises here
    await asyncio.to_thread(_drop_session, port, f"bench-glue-{line}", protocol)
    return {"seconds": seconds, "cpu": cpu, "collected": count}


# -- the agent's connector -------------------------------------------------------------------
class _NoMarks:
    """A sink passing samples to the buffer and dropping the connector's marks."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf

    def submit(self, samples: Sequence[Any], marks: dict[str, str] | None = None) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.buf.submit(samples)
        return fut

    async def marks(self, prefix: str) -> dict[str, str]:
        got: dict[str, str] = await self.buf.marks(prefix)
        return got


class _Agent:
    """One agent (its own id, connector session and buffer file) collecting at ``qos``."""

    def __init__(self, port: int, line: str, kind: str, protocol: str, tmp: Path) -> None:
        from edge_agent.buffer import BufferConfig
        from edge_agent.connectors.mqtt import MqttConnectorConfig

        mapping = _mapping(line)
        self.qos = 0 if kind == "qos0" else 1
        self.with_marks = kind != "qos1_nomarks"
        self.config = MqttConnectorConfig.model_validate(
            {"host": "127.0.0.1", "port": port, "name": "vendor", "qos": self.qos, "protocol": protocol,
             "mappings": [mapping]}
        )
        self.port = port
        self.agent_id = f"bench-{line}-{kind}"
        self.tmp = tmp
        self.path = tmp / "buffer.sqlite"
        self.buffer = BufferConfig(path=self.path)

    def _connector(self) -> Any:
        from edge_agent.connectors.mqtt import MqttConnector
        from edge_agent.deadletter import DeadLetter

        return MqttConnector(self.config, self.agent_id, DeadLetter(self.tmp / "dead.jsonl"))

    async def prime(self) -> None:
        """Open the connector's persistent session and subscribe (as an agent's first start), stop."""
        connector = self._connector()
        async with self.buffer.build(self.agent_id, group_series=True) as buf:
            task = asyncio.create_task(connector.run(buf if self.with_marks else _NoMarks(buf)))
            while not connector.stats.connected:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # the SUBACK
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def collect(self, n: int) -> dict[str, float]:
        """Start again (a new connector under the agent's supervisor, which reconnects it as in
        the agent; the buffer reopened) and collect the ``n`` queued messages. Ends when all are
        committed, or when nothing more was committed for ``_STALL_S`` (QoS 0 messages lost in a
        reconnect are not redelivered)."""
        from edge_agent.supervisor import supervise

        connector = self._connector()
        expected = n * VALUES_PER_MESSAGE
        async with self.buffer.build(self.agent_id, group_series=True) as buf:
            sink: Any = buf if self.with_marks else _NoMarks(buf)
            cpu0, start = time.process_time(), time.perf_counter()
            task = asyncio.create_task(supervise(connector, sink))
            seen, end, cpu = 0, start, 0.0
            while buf.stats.committed < expected and time.perf_counter() - end < _STALL_S:
                await asyncio.sleep(0.005)
                if buf.stats.committed > seen:
                    seen, end, cpu = buf.stats.committed, time.perf_counter(), time.process_time() - cpu0
            seconds = end - start
            commits = buf.stats.commits
            await asyncio.sleep(0.1)  # late duplicates would show in the counts below
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(_drop_session, self.port, connector.client_id, self.config.protocol)
        with sqlite3.connect(self.path) as db:
            rows, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT data) FROM samples").fetchone()
            (marks,) = db.execute("SELECT COUNT(*) FROM marks WHERE key LIKE 'mqtt:vendor:dup:%'").fetchone()
        db.close()
        want_marks = min(n, DUP_SLOTS) if self.qos > 0 and self.with_marks else 0
        exact = rows == distinct == expected and marks == want_marks and connector.stats.bad_payloads == 0
        st = connector.stats
        return {"seconds": seconds, "cpu": cpu, "collected": distinct / VALUES_PER_MESSAGE, "rows": rows,
                "distinct": distinct, "marks": marks, "commits": commits, "exact": float(exact),
                "reconnects": st.reconnects, "duplicates_skipped": st.duplicates_skipped}


# -- main ----------------------------------------------------------------------------------
_KINDS = ("raw", "glue", "qos1", "qos1_nomarks", "qos0")
_BARE = ("raw", "glue")


async def _round(port: int, r: int, n: int, protocol: str, tmp: Path) -> dict[str, dict[str, float]]:
    """Every consumer subscribes, the publisher publishes once, each consumer collects in turn (the
    order rotated by one each round, so that drift in the machine's load does not favour one)."""
    line = f"round{r}"
    agents = {k: _Agent(port, line, k, protocol, tmp / f"{line}-{k}") for k in _KINDS if k not in _BARE}
    await _raw_prime(port, line, protocol)
    await _glue_prime(port, line, protocol)
    for agent in agents.values():
        await agent.prime()
    pub = await asyncio.to_thread(_prepublish, port, line, n)
    print(f"round {r}: published {n:,} messages ({pub['payload_bytes']:.0f} bytes each) at "
          f"{n / pub['seconds']:,.0f} messages/s (QoS 1), queued for {len(_KINDS)} sessions", flush=True)
    out: dict[str, dict[str, float]] = {}
    for kind in _KINDS[r % len(_KINDS):] + _KINDS[:r % len(_KINDS)]:
        bare = {"raw": _raw, "glue": _glue}.get(kind)
        got = await (bare(port, line, n, protocol) if bare is not None else agents[kind].collect(n))
        got["pub_seconds"] = pub["seconds"]
        rate = got["collected"] / got["seconds"]
        extra = ""
        if kind not in _BARE:
            extra = (f"; {int(got['rows']):,} rows, {int(got['distinct']):,} distinct, "
                     f"{int(got['marks']):,} marks, {int(got['commits']):,} commits, "
                     f"{int(got['reconnects'])} reconnects, {int(got['duplicates_skipped']):,} DUPs skipped"
                     f"{'' if got['exact'] else ' -- NOT EXACTLY ONCE'}")
        print(f"round {r} {kind:13s} {rate:10,.0f} messages/s {rate * VALUES_PER_MESSAGE:11,.0f} values/s, "
              f"CPU {got['cpu'] / max(1.0, got['collected']) * 1e6:5.0f} us/message{extra}", flush=True)
        out[kind] = got
    return out


def _commit_cost(n: int, per_commit: int, tmp: Path, reps: int) -> dict[str, float]:
    """Microseconds per message of the buffer's commit of the same messages' rows in transactions
    of ``per_commit`` messages (``Db.insert``, then ``Db.set_marks`` with one mark per message, as
    ``SqliteBuffer`` commits them; the marks' dict built inside the clock too), without and with
    marks, alternating on fresh databases; medians of ``reps``."""
    import hashlib

    from edge_agent.buffer.codec import encode_sample
    from edge_agent.buffer.sqlite import open_db
    from edge_agent.mapping import JsonMapping, PayloadMapper

    mapper = PayloadMapper([JsonMapping.model_validate(_mapping("cost"))])
    messages = _payloads("cost", n)
    rows = [[encode_sample(s) for s in mapper.map(t, p).samples] for t, p in messages]
    digests = [hashlib.blake2b(t.encode() + b"\0" + p, digest_size=16).digest() for t, p in messages]
    us: dict[bool, list[float]] = {False: [], True: []}
    for r in range(reps):
        for marks in (False, True):
            db = open_db(tmp / f"cost-{r}-{marks}.sqlite", "full", "cost")
            spent = 0.0
            for i in range(0, n, per_commit):
                chunk = [row for msg in rows[i:i + per_commit] for row in msg]
                start = time.perf_counter()
                with db.transaction():
                    db.insert(chunk, time.time())
                    if marks:
                        db.set_marks({f"mqtt:vendor:dup:{j % DUP_SLOTS:04d}": f"{j}:{digests[j].hex()}"
                                      for j in range(i, min(i + per_commit, n))})
                spent += time.perf_counter() - start
            db.close()
            us[marks].append(spent / n * 1e6)
    return {"without": statistics.median(us[False]), "with": statistics.median(us[True])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.agent_mqtt", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20,000 messages, 1 round (under a minute)")
    p.add_argument("--messages", type=int, help="messages per consumer (default 200,000, quick 20,000)")
    p.add_argument("--rounds", type=int, help="rounds, medians reported (default 3, quick 1)")
    p.add_argument("--inflight", type=int, default=100,
                   help="the broker's max_inflight_messages (default 100, as tests.support.servers)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5",
                   help="MQTT version of the consumers (default 5, the connector's default)")
    add_smoke_flag(p)
    p.add_argument("--child-publish", nargs=3, metavar=("PORT", "LINE", "N"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child_publish:
        _publish(int(a.child_publish[0]), a.child_publish[1], int(a.child_publish[2]))
        return 0
    from tests.support.servers import Mosquitto

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the finally: no broker left behind
    n = a.messages or sized(a, full=200_000, quick=20_000, smoke=500)
    rounds = a.rounds or sized(a, full=3, quick=1, smoke=1)
    results: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-agent-mqtt-") as d:
        tmp = Path(d)
        broker = Mosquitto(tmp / "mosquitto", extra_config=(
            f"queue_qos0_messages true\nautosave_interval 0\nmax_inflight_messages {a.inflight}\n"))
        broker.start()
        try:
            print(f"{n:,} acme messages x {VALUES_PER_MESSAGE} values per consumer, {rounds} round(s), "
                  f"MQTT {a.protocol}, Mosquitto max_inflight_messages {a.inflight}", flush=True)
            for r in range(rounds):
                results.append(asyncio.run(_round(broker.port, r, n, a.protocol, tmp)))
        finally:
            broker.kill()
        per_commit = max(1, round(statistics.median(res["qos1"]["collected"] / res["qos1"]["commits"]
                                                    for res in results)))
        cost = _commit_cost(min(n, sized(a, full=20_000, quick=10_000, smoke=500)), per_commit, tmp,
                            sized(a, full=5, quick=3, smoke=1))

    def med(kind: str, key: str) -> float:
        return statistics.median(res[kind][key] / max(1.0, res[kind]["collected"]) for res in results)

    rate = {k: 1 / med(k, "seconds") for k in _KINDS}
    cpu_us = {k: med(k, "cpu") * 1e6 for k in _KINDS}
    agents = tuple(k for k in _KINDS if k not in _BARE)
    exact_by = {k: all(res[k]["exact"] for res in results) for k in agents}
    exact = all(exact_by.values())
    raw_ratio = rate["qos1"] / rate["raw"]
    glue_ratio = rate["qos1"] / rate["glue"]
    target = 0.9
    print(f"medians of {rounds}: raw {rate['raw']:,.0f}, bare subscriber on the connector's glue "
          f"{rate['glue']:,.0f}, qos1 {rate['qos1']:,.0f}, "
          f"qos1 without marks {rate['qos1_nomarks']:,.0f}, qos0 {rate['qos0']:,.0f} messages/s")
    print(f"qos1/raw = {raw_ratio:.3f} (target >= {target}: {'met' if raw_ratio >= target else 'NOT met'}); "
          f"qos1/qos0 = {rate['qos1'] / rate['qos0']:.3f}; qos1/qos1 without marks = "
          f"{rate['qos1'] / rate['qos1_nomarks']:.3f}; qos0/raw = {rate['qos0'] / rate['raw']:.3f}")
    print(f"qos1/glue = {glue_ratio:.3f} (against the fastest bare subscriber measured: the connector's "
          f"own paho-on-the-loop with buffered reads, no mapping, no buffer; "
          f"{'met' if glue_ratio >= target else 'NOT met'} at {target})")
    marks_us = cost["with"] - cost["without"]
    print(f"buffer commit of the same rows, {per_commit:,} messages per transaction (as in the qos1 runs): "
          f"{cost['without']:.1f} us/message without marks, {cost['with']:.1f} with: the marks cost "
          f"{marks_us:.1f} us/message, against {cpu_us['qos1']:.0f} us of CPU per message collected at qos1")
    print(f"exactly once in the buffer (rows = distinct rows = messages x {VALUES_PER_MESSAGE}, marks as "
          f"expected): {exact} ({', '.join(f'{k} {v}' for k, v in exact_by.items())})")
    result: dict[str, Any] = {
        "bench": "agent_mqtt",
        "quick": a.quick,
        "smoke": a.smoke,
        "messages": n,
        "values_per_message": VALUES_PER_MESSAGE,
        "rounds": rounds,
        "protocol": a.protocol,
        "broker_max_inflight": a.inflight,
        "publish_messages_per_s": round(n / statistics.median(
            res["raw"]["pub_seconds"] for res in results)),
        "raw_messages_per_s": round(rate["raw"]),
        "raw_values_per_s": round(rate["raw"] * VALUES_PER_MESSAGE),
        "qos1_messages_per_s": round(rate["qos1"]),
        "qos1_values_per_s": round(rate["qos1"] * VALUES_PER_MESSAGE),
        "qos1_nomarks_messages_per_s": round(rate["qos1_nomarks"]),
        "qos0_messages_per_s": round(rate["qos0"]),
        "qos0_values_per_s": round(rate["qos0"] * VALUES_PER_MESSAGE),
        "cpu_us_per_message": {k: round(v, 1) for k, v in cpu_us.items()},
        "commit_messages_per_transaction": per_commit,
        "commit_us_per_message": round(cost["without"], 2),
        "commit_with_marks_us_per_message": round(cost["with"], 2),
        "marks_us_per_message": round(marks_us, 2),
        "glue_messages_per_s": round(rate["glue"]),
        "raw_ratio": round(raw_ratio, 3),
        "glue_ratio": round(glue_ratio, 3),
        "marks_cost_ratio": round(rate["qos1"] / rate["qos0"], 3),
        "marks_only_ratio": round(rate["qos1"] / rate["qos1_nomarks"], 3),
        "qos0_raw_ratio": round(rate["qos0"] / rate["raw"], 3),
        "reconnects": {k: int(sum(res[k]["reconnects"] for res in results)) for k in agents},
        "duplicates_skipped": {k: int(sum(res[k]["duplicates_skipped"] for res in results)) for k in agents},
        "exactly_once": exact,
        "exactly_once_by_kind": exact_by,
        "target_raw_ratio": target,
        "target_met": raw_ratio >= target,
        "target_met_vs_glue": glue_ratio >= target,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
