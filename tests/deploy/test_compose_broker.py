"""The compose stack's broker security, checked on a real Mosquitto: deploy/compose/setup/setup.sh
refuses the .env.example secrets, writes the password file and ACLs from .env, and the broker
configured by deploy/compose/mosquitto/mosquitto.conf (paths and ports moved into a temporary
folder) refuses anonymous clients on the published listener and lets each user publish or
subscribe only what mosquitto/acl gives it."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.ports import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
SETUP = COMPOSE / "setup"
GOOD = {
    "INFLUX_PASSWORD": "influx-admin-0123456789",
    "INFLUX_TOKEN": "0123456789abcdef0123456789abcdef",
    "GRAFANA_ADMIN_PASSWORD": "grafana-admin-0123456789",
    "MQTT_AGENT_PASSWORD": "agent-0123456789abcdef",
    "MQTT_GATEWAY_PASSWORD": "gateway-0123456789abcdef",
    "MQTT_SCORING_PASSWORD": "scoring-0123456789abcdef",
}
needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None,
    reason="mosquitto not installed (scripts/test.sh installs it)",
)


def env_example() -> dict[str, str]:
    out = {}
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def run_setup(auth: Path, secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "ZHIZAO_SETUP_DIR": str(auth / "in"),
        "ZHIZAO_MOSQUITTO_AUTH": str(auth),
        "ZHIZAO_MOSQUITTO_OWNER": f"{os.getuid()}:{os.getgid()}",
        **secrets,
    }
    (auth / "in").mkdir(parents=True, exist_ok=True)
    # the compose file mounts these four files at /setup: the same here, in a folder
    for src, name in (
        (SETUP / "setup.sh", "setup.sh"),
        (SETUP / "check-secrets.sh", "check-secrets.sh"),
        (COMPOSE / "mosquitto" / "acl", "acl"),
        (COMPOSE / "mosquitto" / "acl-internal", "acl-internal"),
    ):
        shutil.copy(src, auth / "in" / name)
    return subprocess.run(
        ["sh", str(auth / "in" / "setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_mosquitto
def test_setup_refuses_the_env_example_secrets_naming_each(tmp_path: Path) -> None:
    example = env_example()
    secrets = {k: example[k] for k in GOOD}
    done = run_setup(tmp_path, secrets)
    assert done.returncode == 1
    for name in GOOD:
        assert f"{name} still has the placeholder value" in done.stderr, done.stderr
    assert "openssl rand" in done.stderr
    assert not (tmp_path / "passwd").exists()
    short = run_setup(tmp_path, {**GOOD, "MQTT_GATEWAY_PASSWORD": "short", "INFLUX_TOKEN": ""})
    assert short.returncode == 1
    assert (
        "MQTT_GATEWAY_PASSWORD is shorter than 16" in short.stderr and "INFLUX_TOKEN is empty" in short.stderr
    )
    quote = run_setup(tmp_path, {**GOOD, "MQTT_AGENT_PASSWORD": 'has"a-quote-0123456789'})
    assert quote.returncode == 1 and "MQTT_AGENT_PASSWORD may only contain" in quote.stderr


@dataclass
class Broker:
    port: int
    internal_port: int
    conf: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        wait_listening(self.port)
        wait_listening(self.internal_port)

    def kill(self) -> None:
        """SIGKILL, as a crash or a power loss: no save on the way out."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    auth = tmp_path / "auth"
    auth.mkdir()
    done = run_setup(auth, GOOD)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in auth.iterdir()} >= {"passwd", "acl", "acl-internal"}
    assert all((auth / n).stat().st_mode & 0o077 == 0 for n in ("passwd", "acl", "acl-internal"))
    assert GOOD["MQTT_AGENT_PASSWORD"] not in (auth / "passwd").read_text()  # hashed
    port, internal = free_port(), free_port()
    conf = (COMPOSE / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/auth/", f"{auth}/").replace("/mosquitto/data/", f"{tmp_path}/")
    conf = re.sub(r"^listener 1883 0\.0\.0\.0$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 1884 0\.0\.0\.0$", f"listener {internal} 127.0.0.1", conf, flags=re.M)
    assert str(port) in conf and str(internal) in conf
    if os.geteuid() == 0:
        conf = "user root\n" + conf
    (tmp_path / "mosquitto.conf").write_text(conf)
    b = Broker(port, internal, tmp_path / "mosquitto.conf", tmp_path / "mosquitto.log")
    try:
        b.start()
        yield b
    finally:
        b.stop()


class Client:
    """A paho MQTT 5 client that records what it receives and the outcome of each request."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None) -> None:
        self.messages: queue.Queue[str] = queue.Queue()
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.acks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        self.c.on_message = lambda _c, _u, m: self.messages.put(m.topic)
        self.c.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.acks.put(list(rcs))
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def connected(self) -> bool:
        rc = self.connack.get(timeout=10)
        return not rc.is_failure

    def subscribe(self, topic: str) -> bool:
        self.c.subscribe(topic, qos=1)
        return not self.acks.get(timeout=10)[0].is_failure

    def publish(self, topic: str, payload: bytes = b"x") -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def received(self, wait_s: float = 1.5) -> list[str]:
        deadline, out = time.monotonic() + wait_s, []
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                out.append(self.messages.get(timeout=0.1))
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@needs_mosquitto
def test_published_listener_refuses_anonymous_and_wrong_passwords(broker: Broker) -> None:
    anonymous = Client(broker.port)
    assert not anonymous.connected()
    wrong = Client(broker.port, "gw-plant1", GOOD["MQTT_AGENT_PASSWORD"])
    assert not wrong.connected()
    for c in (anonymous, wrong):
        c.close()


@needs_mosquitto
def test_each_user_publishes_and_subscribes_only_what_the_acl_gives_it(broker: Broker) -> None:
    gateway = Client(broker.port, "gw-plant1", GOOD["MQTT_GATEWAY_PASSWORD"])
    agent = Client(broker.port, "cell-1", GOOD["MQTT_AGENT_PASSWORD"])
    scoring = Client(broker.port, "scoring", GOOD["MQTT_SCORING_PASSWORD"])
    machine = Client(broker.internal_port)  # the simulator: anonymous, internal listener
    clients = (gateway, agent, scoring, machine)
    try:
        assert all(c.connected() for c in clients)
        # Mosquitto grants every SUBSCRIBE and applies the read ACL to each message it delivers:
        # so what counts is what each client receives.
        assert gateway.subscribe("$share/zhizao-gateways/zhizao/v1/+/+/+/+")
        assert gateway.subscribe("zhizao/v1/agents/+/status")
        gateway.subscribe("zhizao/v1/alerts/#")
        gateway.subscribe("acme/#")
        agent.subscribe("acme/+/+/telemetry")
        agent.subscribe("brightline/+/+/data")
        agent.subscribe("zhizao/v1/#")
        scoring.subscribe("#")
        machine.subscribe("#")

        agent.publish("zhizao/v1/plant1/a1/line1/cnc-1")  # its own line: delivered
        agent.publish("zhizao/v1/agents/cell-1/status")
        agent.publish("zhizao/v1/plant1/a1/line2/cnc-9")  # another line: dropped
        agent.publish("zhizao/v1/agents/cell-2/status")  # another agent's status: dropped
        scoring.publish("zhizao/v1/plant1/a1/line1/imm-1")  # scoring is no data producer
        scoring.publish("zhizao/v1/alerts/plant1/a1/line1/imm-1")  # its alerts: nobody here may read
        machine.publish("zhizao/v1/plant1/a1/line1/pack-1")  # nor is the anonymous listener
        gateway.publish("zhizao/v1/plant1/a1/line1/comp-1")  # the gateway only reads
        machine.publish("acme/line1/cnc-1/telemetry")
        machine.publish("brightline/plant1/imm-1/data")
        machine.publish("acme/line1/cnc-1/other")  # not a vendor data topic
        assert sorted(gateway.received()) == [
            "zhizao/v1/agents/cell-1/status",
            "zhizao/v1/plant1/a1/line1/cnc-1",
        ]
        assert sorted(agent.received(0.5)) == ["acme/line1/cnc-1/telemetry", "brightline/plant1/imm-1/data"]
        assert scoring.received(0.5) == [] and machine.received(0.5) == []
    finally:
        for c in clients:
            c.close()


@needs_mosquitto
def test_internal_listener_serves_the_health_check_only(broker: Broker) -> None:
    health = Client(broker.internal_port)
    try:
        assert health.connected()
        assert health.subscribe("$SYS/broker/uptime")
        health.subscribe("zhizao/v1/#")
        health.subscribe("acme/#")
        writer = Client(broker.port, "cell-1", GOOD["MQTT_AGENT_PASSWORD"])
        try:
            assert writer.connected()
            writer.publish("zhizao/v1/plant1/a1/line1/cnc-1")
            writer.publish("zhizao/v1/agents/cell-1/status")
        finally:
            writer.close()
        other = Client(broker.internal_port)
        other.publish("acme/line1/cnc-1/telemetry")
        other.close()
        assert set(health.received(wait_s=12)) == {"$SYS/broker/uptime"}  # $SYS is published every 10 s
    finally:
        health.close()


@needs_mosquitto
def test_messages_queued_for_an_offline_gateway_survive_a_broker_kill_9(broker: Broker) -> None:
    """A PUBACK is the agent's delivery (its buffer lets the batch go), but the broker holds the
    message in memory until its next save (``autosave_interval``). With the compose setting, what
    was queued for a gateway that is away (restarting) more than that long before the broker is
    killed comes back with the broker. (It was 30 s: all 200 messages were lost.)"""
    saved = re.search(r"^autosave_interval (\d+)$", broker.conf.read_text(), flags=re.M)
    assert saved is not None and int(saved.group(1)) <= 1, "the compose broker saves at least every second"
    got: queue.Queue[bytes] = queue.Queue()

    def gateway() -> mqtt.Client:  # a persistent session, as the gateway's
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-plant1-0", protocol=mqtt.MQTTv5)
        c.username_pw_set("gw-plant1", GOOD["MQTT_GATEWAY_PASSWORD"])
        c.on_message = lambda _c, _u, m: got.put(bytes(m.payload))
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", broker.port, keepalive=10, clean_start=False, properties=props)
        c.loop_start()
        return c

    gw = gateway()
    gw.subscribe("zhizao/v1/+/+/+/+", qos=1)
    time.sleep(0.5)
    gw.disconnect()
    gw.loop_stop()
    agent = Client(broker.port, "cell-1", GOOD["MQTT_AGENT_PASSWORD"])
    assert agent.connected()
    for i in range(200):
        agent.publish("zhizao/v1/plant1/a1/line1/cnc-1", str(i).encode())  # waits for the PUBACK
    agent.close()
    time.sleep(int(saved.group(1)) + 1.0)
    broker.kill()
    broker.start()
    gw = gateway()
    try:
        received: set[bytes] = set()
        deadline = time.monotonic() + 15
        while len(received) < 200 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                received.add(got.get(timeout=0.2))
        assert received == {str(i).encode() for i in range(200)}, f"{200 - len(received)} of 200 lost"
    finally:
        gw.disconnect()
        gw.loop_stop()
