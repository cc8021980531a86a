"""paho on the event loop (``edge_agent.connectors.mqtt.aio``) against a real Mosquitto: keepalive
pings on an idle connection, bursts longer than one wake-up of the reader, a failing callback, a
clean close; and the MQTT connector over TLS and with refused credentials, through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.mqtt import MqttConnector, MqttConnectorConfig, aio
from edge_agent.connectors.mqtt.aio import BufferedSocket, PahoOnLoop
from edge_agent.deadletter import DeadLetter
from tests.edge_agent.test_mapping import sample_mapping
from tests.edge_agent.test_mqtt_connector import Publisher, acme, drain
from tests.support.certs import self_signed, tls_password_broker
from tests.support.servers import Mosquitto
from tests.support.waiting import eventually
from zhizao.errors import ConnectionLost, SecurityError


def paho_client(client_id: str, **kw: Any) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, **kw)


async def test_keepalive_pings_keep_an_idle_connection(mosquitto: Mosquitto) -> None:
    """No traffic for more than 3 x keepalive: paho's PINGREQs (``loop_misc`` every second on the
    loop) keep the connection, which Mosquitto would drop after 1.5 x keepalive of silence."""
    client = paho_client("idle")
    sent: list[str] = []
    client.on_log = lambda _c, _u, _level, line: sent.append(line)
    got: list[bytes] = []
    client.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    session = PahoOnLoop(client)
    try:
        await session.connect(mosquitto.host, mosquitto.port, keepalive=3)
        await eventually(lambda: session.connected, 10)
        client.subscribe("idle/#", qos=1)
        await asyncio.sleep(10.0)
        assert session.connected and not session.lost.done()
        assert sum("Sending PINGREQ" in line for line in sent) >= 2
        assert sum("Received PINGRESP" in line for line in sent) >= 2
        pub = Publisher(mosquitto)
        pub.publish("idle/x", b"still here")
        pub.close()
        await eventually(lambda: got == [b"still here"], 10)
    finally:
        session.close()
    assert client.socket() is None, "closed"


async def test_a_long_burst_is_read_over_several_wakeups_in_order(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages queued for an offline session arrive back to back: the reader stops after
    ``PACKETS_PER_WAKEUP`` packets and goes on in a later pass of the loop (what the buffer already
    holds would not wake it again); none is lost, duplicated or reordered."""
    monkeypatch.setattr(aio, "PACKETS_PER_WAKEUP", 7)
    n = 500
    client = paho_client("burst", clean_session=False)
    got: list[bytes] = []
    client.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    wakeups = 0

    def after_read() -> None:
        nonlocal wakeups
        wakeups += 1

    session = PahoOnLoop(client, after_read=after_read)
    try:
        await session.connect(mosquitto.host, mosquitto.port, keepalive=30)
        client.subscribe("burst/#", qos=1)
        await asyncio.sleep(0.3)  # the SUBACK
    finally:
        session.close()
    pub = Publisher(mosquitto)
    for i in range(n):
        pub.client.publish("burst/x", str(i).encode(), qos=1)
    pub.client.publish("burst/x", b"end", qos=1).wait_for_publish(10)
    pub.close()
    client = paho_client("burst", clean_session=False)
    client.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    session = PahoOnLoop(client, after_read=after_read)
    try:
        await session.connect(mosquitto.host, mosquitto.port, keepalive=30)
        await eventually(lambda: got[-1:] == [b"end"], 20)
    finally:
        session.close()
    assert got == [str(i).encode() for i in range(n)] + [b"end"]
    assert wakeups >= n // 7


async def test_a_long_burst_reads_at_most_two_wakeups_per_pass_of_the_loop(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a backlog is read, one pass of the loop runs at most two wake-ups of the reader (the
    socket's reader and the one drain the wake-up before queued): drains never pile up from pass
    to pass, so a pass stays short and what else waits on the loop (the buffer's group-commit
    timer, the keepalive) runs on time."""
    monkeypatch.setattr(aio, "PACKETS_PER_WAKEUP", 5)
    n = 2000
    client = paho_client("passes", clean_session=False)
    session = PahoOnLoop(client)
    try:
        await session.connect(mosquitto.host, mosquitto.port, keepalive=30)
        client.subscribe("passes/#", qos=1)
        await asyncio.sleep(0.3)  # the SUBACK
    finally:
        session.close()
    pub = Publisher(mosquitto)
    for i in range(n):
        pub.client.publish("passes/x", str(i).encode(), qos=1)
    pub.client.publish("passes/x", b"end", qos=1).wait_for_publish(10)
    pub.close()
    got: list[bytes] = []
    wakeups = 0
    per_pass: list[int] = []
    loop = asyncio.get_running_loop()

    def after_read() -> None:
        nonlocal wakeups
        wakeups += 1

    def probe(seen: int = 0) -> None:  # runs once per pass of the loop
        per_pass.append(wakeups - seen)
        if got[-1:] != [b"end"]:
            loop.call_soon(probe, wakeups)

    client = paho_client("passes", clean_session=False)
    client.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    session = PahoOnLoop(client, after_read=after_read)
    try:
        await session.connect(mosquitto.host, mosquitto.port, keepalive=30)
        probe()
        await eventually(lambda: got[-1:] == [b"end"], 30)
    finally:
        session.close()
    assert got == [str(i).encode() for i in range(n)] + [b"end"]
    assert wakeups >= n // 5
    assert max(per_pass) <= 2, per_pass


async def test_an_exception_in_a_callback_ends_the_connection(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception raised in ``on_message`` (inside ``loop_read``) ends the connection: logged
    with its traceback, ``wait_closed`` raises ``ConnectionLost`` with it as the cause, the reader
    is off the loop."""
    client = paho_client("fails")
    calls = 0

    def on_message(_c: mqtt.Client, _u: Any, _msg: mqtt.MQTTMessage) -> None:
        nonlocal calls
        calls += 1
        raise KeyError("a bug")

    client.on_message = on_message
    session = PahoOnLoop(client)
    try:
        await session.connect(mosquitto.host, mosquitto.port, keepalive=30)
        client.subscribe("fail/#", qos=0)
        await asyncio.sleep(0.3)
        pub = Publisher(mosquitto)
        pub.publish("fail/x", b"1")
        pub.publish("fail/x", b"2")
        pub.close()
        with pytest.raises(ConnectionLost, match="connection error: KeyError") as info:
            await asyncio.wait_for(session.wait_closed(), 10)
        assert isinstance(info.value.__cause__, KeyError)
        await asyncio.sleep(0.3)
        assert calls == 1, "nothing read after the failure"
    finally:
        session.close()
    assert any("a bug" in r.getMessage() or r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)


async def test_a_connect_cancelled_in_its_thread_closes_what_it_opens(mosquitto: Mosquitto) -> None:
    """Cancelled while ``client.connect`` blocks in the worker thread (here: slowed down), the
    connection the thread then opens is closed by the thread itself, never attached to the loop."""
    client = paho_client("slow")
    connect = client.connect

    def slow_connect(*args: Any, **kw: Any) -> Any:
        time.sleep(0.5)
        return connect(*args, **kw)

    client.connect = slow_connect  # type: ignore[method-assign]
    session = PahoOnLoop(client)
    task = asyncio.create_task(session.connect(mosquitto.host, mosquitto.port, keepalive=30))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    session.close()  # what the caller's ``finally`` does: the thread is still connecting
    await asyncio.sleep(1.0)
    assert client.socket() is None and not session.connected
    assert session.lost.done() and session.lost.result() == "closed"


def test_buffered_socket_serves_small_reads_from_one_recv() -> None:
    class Sock:
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks
            self.recvs = 0

        def recv(self, _n: int) -> bytes:
            self.recvs += 1
            if not self.chunks:
                raise BlockingIOError
            return self.chunks.pop(0)

    raw = Sock([b"\x30\x05hello\x30", b"\x02hi", b""])
    sock = BufferedSocket(raw)
    assert (sock.recv(1), sock.recv(1), sock.pending()) == (b"\x30", b"\x05", 6)
    assert (sock.recv(100), sock.pending(), raw.recvs) == (b"hello\x30", 0, 1)
    assert (sock.recv(1), sock.recv(5), sock.pending()) == (b"\x02", b"hi", 0)
    assert sock.recv(1) == b"", "end of stream"
    with pytest.raises(BlockingIOError):
        sock.recv(1)


# -- the connector over TLS, and refused credentials --------------------------------------
@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Mosquitto, int, Path]]:
    """Mosquitto with a password file (user ``agent``, password ``secret``) on its plain port and
    on a TLS port (certificate for 127.0.0.1, its own CA): ``(broker, tls_port, ca_file)``."""
    with tls_password_broker(tmp_path, "agent") as broker:
        yield broker


def secured_config(port: int, password: str, protocol: str, ca_file: Path | None) -> MqttConnectorConfig:
    return MqttConnectorConfig.model_validate({
        "host": "127.0.0.1", "port": port, "protocol": protocol, "username": "agent", "password": password,
        "tls": {"ca_file": str(ca_file)} if ca_file else None, "mappings": [sample_mapping("acme")]})


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_connector_over_tls(
    tmp_path: Path, secured: tuple[Mosquitto, int, Path], protocol: str
) -> None:
    """TLS reads go through the same buffered reader (a TLS socket's own pending bytes drained
    too): every message of a burst arrives, once."""
    broker, tls_port, ca = secured
    conn = MqttConnector(secured_config(tls_port, "secret", protocol, ca), "agent-1",
                         DeadLetter(tmp_path / "dead.jsonl"))
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-pub")
    pub.username_pw_set("agent", "secret")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        task = asyncio.create_task(conn.run(buf))
        try:
            await eventually(lambda: conn.stats.connected, 15)
            await asyncio.sleep(0.3)  # the SUBACK
            for i in range(300):
                pub.publish("acme/line2/imm-3/telemetry", acme(i), qos=1)
            await eventually(lambda: conn.stats.samples_read == 300, 20)
        finally:
            pub.disconnect()
            pub.loop_stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        got = await drain(buf)
    assert sorted(s.value for s in got) == [200.0 + i for i in range(300)]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_connector_refused_credentials_and_untrusted_broker_are_security_errors(
    tmp_path: Path, secured: tuple[Mosquitto, int, Path], protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker, tls_port, _ = secured
    dl = DeadLetter(tmp_path / "dead.jsonl")
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf:
        wrong = MqttConnector(secured_config(broker.port, "wrong", protocol, None), "agent-1", dl)
        with caplog.at_level(logging.INFO, "edge_agent.connectors.mqtt"), \
                pytest.raises(SecurityError, match="refused: Not authorized"):
            await asyncio.wait_for(wrong.run(buf), 15)
        # never reported connected: that waits for the broker's CONNACK (it said "connected" first)
        assert not [r for r in caplog.records if "connected to" in r.getMessage()], caplog.text
        assert wrong.stats.reconnects == 0
        other_ca, _ = self_signed(tmp_path, "other")
        untrusted = MqttConnector(secured_config(tls_port, "secret", protocol, other_ca), "agent-1", dl)
        with pytest.raises(SecurityError, match=r"MQTT TLS to 127\.0\.0\.1:\d+ failed"):
            await asyncio.wait_for(untrusted.run(buf), 15)
        assert not wrong.stats.connected and not untrusted.stats.connected
