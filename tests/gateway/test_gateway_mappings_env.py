"""The gateway's raw vendor mappings and config loader, as the edge agent's (helper-78 follow-ups):

- ``[[broker.mappings]]`` are checked with the agent's :func:`~edge_agent.mapping.check_mappings`:
  partially overlapping topics, a mapping an earlier one shadows and duplicate names are config
  errors (``zhizao gateway --check``: exit 2 naming both mappings) — the gateway accepted them,
  and a broker delivers a message matching two subscriptions twice (stored twice);
- of overlapping filters only the covering one is subscribed, and a covered one left in the
  persistent session by an earlier version (which subscribed every mapping's filter) is
  unsubscribed: one publish matching two mappings is stored once (real Mosquitto);
- ``${NAME}`` in string values comes from the environment (:func:`zhizao.config.expand_env`, the
  agent's); a variable that is not set is a config error naming key and variable (exit 2).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.buffer import SqliteBuffer
from edge_agent.deadletter import DeadLetter
from gateway.config import GatewayConfig, load
from gateway.fleet import FleetState
from gateway.intake import UnsIntake
from gateway.testing import write_config
from tests.edge_agent.test_mqtt_connector import Publisher
from tests.support.servers import Mosquitto
from tests.support.sinks import running
from zhizao.errors import ConfigError
from zhizao.model import AssetPath

ROOT = Path(__file__).resolve().parents[2]

OVERLAP = """
[[broker.mappings]]
name = "specific"
topic = "ovl/+line/+machine/telemetry"
asset = "plant1/a1/{line}/{machine}"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }

[[broker.mappings]]
name = "catchall"
topic = "ovl/#rest"
asset = "plant1/a1/line8/other"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }
"""

PARTIAL = """
[[broker.mappings]]
name = "by-machine"
topic = "ovl/+line/m1/telemetry"
asset = "plant1/a1/{line}/m1"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }

[[broker.mappings]]
name = "by-line"
topic = "ovl/l1/+machine/telemetry"
asset = "plant1/a1/l1/{machine}"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }
"""

SHADOWED = """
[[broker.mappings]]
name = "first"
topic = "ovl/#rest"
asset = "plant1/a1/line8/other"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }

[[broker.mappings]]
name = "second"
topic = "ovl/+line/+machine/telemetry"
asset = "plant1/a1/{line}/{machine}"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }
"""

DUPLICATE = PARTIAL.replace('name = "by-line"', 'name = "by-machine"').replace(
    "ovl/l1/+machine/telemetry", "other/l1/+machine/telemetry")


def _config(tmp_path: Path, broker: Mosquitto, mappings_toml: str) -> GatewayConfig:
    doc: dict[str, Any] = tomllib.loads(mappings_toml)
    return GatewayConfig.model_validate({
        "id": "gw-1", "site": "plant", "deadletter_path": str(tmp_path / "dl.jsonl"),
        "broker": {"host": broker.host, "port": broker.port, **doc["broker"]},
        "uplink": {"http": {"url": "http://127.0.0.1:1"}},
        "buffer": {"path": str(tmp_path / "b.sqlite"), "commit_interval_s": 0.02}})


def _earlier_version_session(broker: Mosquitto, client_id: str, filters: list[str]) -> None:
    """What an earlier gateway left at the broker: a persistent session subscribed to every
    mapping's filter (the broker keeps the subscriptions with the session)."""
    old = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    old.connect(broker.host, broker.port, clean_start=False, properties=props)
    old.loop_start()
    for flt in filters:
        old.subscribe(flt, qos=1)
    time.sleep(0.5)  # the SUBACKs
    old.disconnect()
    old.loop_stop()


async def _stored_until_sentinel(buf: SqliteBuffer, pub: Publisher) -> list[tuple[AssetPath, str, object]]:
    """Every sample stored once the sentinel (published last, on a topic only the catch-all
    matches) is: the broker delivers a session's messages in order, so every copy of what was
    published before it has arrived by then."""
    pub.publish("ovl/zz", orjson.dumps({"ts": 1795392009000, "end": 1}))
    got: list[tuple[AssetPath, str, object]] = []
    for _ in range(150):
        records = await buf.take_bulk(10_000)
        assert all(r.is_record for r in records)
        got += [(s.asset, s.signal, s.value) for r in records for s in r.decode().samples]
        await buf.ack_many(records)
        if any(signal == "end" for _, signal, _ in got):
            await asyncio.sleep(0.3)  # a late second copy of the sentinel would come now
            records = await buf.take_bulk(10_000)
            got += [(s.asset, s.signal, s.value) for r in records for s in r.decode().samples]
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"the sentinel never came: {got}")


@pytest.mark.parametrize("session", ["new", "earlier-version"])
async def test_a_publish_matching_two_mappings_is_stored_once(
    tmp_path: Path, mosquitto: Mosquitto, session: str
) -> None:
    """``ovl/+/+/telemetry`` and ``ovl/#``: only ``$share/<group>/ovl/#`` is subscribed, and the
    covered filter an earlier version subscribed the persistent session to is unsubscribed — one
    publish is one message, mapped by the first matching mapping, stored once."""
    cfg = _config(tmp_path, mosquitto, OVERLAP)
    if session == "earlier-version":
        _earlier_version_session(mosquitto, "gw-1", ["$share/zhizao-gateways/ovl/+/+/telemetry",
                                                     "$share/zhizao-gateways/ovl/#"])
    intake = UnsIntake(cfg, DeadLetter(cfg.deadletter_path), FleetState())
    async with cfg.buffer.build(cfg.id) as buf, running(intake, buf):
        await asyncio.sleep(0.5)  # the UNSUBACK and SUBACK
        pub = Publisher(mosquitto)
        pub.publish("ovl/l1/m1/telemetry", orjson.dumps({"ts": 1795392000000, "temp": 21.5}))
        pub.publish("ovl/other", orjson.dumps({"ts": 1795392001000, "temp": 1.0}))
        got = await _stored_until_sentinel(buf, pub)
        pub.close()
    assert got == [
        (AssetPath("plant1", "a1", "l1", "m1"), "temp", 21.5),
        (AssetPath("plant1", "a1", "line8", "other"), "temp", 1.0),
        (AssetPath("plant1", "a1", "line8", "other"), "end", 1),
    ]
    assert intake.stats.messages == 3 and intake.counts.raw_messages == 3


def _gateway(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, check=False)


def _config_file(tmp_path: Path, extra: str = "", mappings: str = "") -> Path:
    path = write_config(tmp_path / "gateway.toml", broker_port=1883, ingest_url="http://127.0.0.1:1",
                        extra=extra)
    path.write_text(path.read_text() + mappings)
    return path


@pytest.mark.parametrize(("mappings", "names", "says"), [
    (PARTIAL, ("by-machine", "by-line"), "overlap and neither covers the other"),
    (SHADOWED, ("second", "first"), "is never used"),
    (DUPLICATE, ("mappings[0]", "mappings[1]"), "both named 'by-machine'"),
], ids=["partial-overlap", "shadowed", "duplicate-name"])
def test_check_refuses_mappings_a_broker_would_deliver_twice_naming_both(
    tmp_path: Path, mappings: str, names: tuple[str, str], says: str
) -> None:
    cfg = _config_file(tmp_path, mappings=mappings)
    for args in (["--config", str(cfg), "--check"], ["check-config", "--config", str(cfg)]):
        done = _gateway(args)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "broker.mappings" in done.stderr and says in done.stderr, done.stderr
        assert all(name in done.stderr for name in names), done.stderr


def test_the_sample_and_deploy_gateway_configs_still_load(tmp_path: Path) -> None:
    """The configs shipped with the gateway are not refused by the new checks (k8s's rendered as
    its init container does)."""
    k8s = tmp_path / "k8s-gateway.toml"
    template = (ROOT / "deploy" / "k8s" / "config" / "gateway.toml").read_text()
    k8s.write_text(template.replace("@POD_NAME@", "gateway-0"))
    compose = ROOT / "deploy" / "compose" / "config" / "gateway.toml"
    for path in (ROOT / "gateway" / "sample-gateway.toml", compose, k8s):
        assert load(path).id


TOKEN = 'token = "${H78_GW_TOKEN}"'


def test_a_variable_that_is_not_set_is_a_config_error_naming_key_and_variable(tmp_path: Path) -> None:
    cfg = _config_file(tmp_path)
    cfg.write_text(cfg.read_text().replace("[uplink.http]\n", f"[uplink.http]\n{TOKEN}\n"))
    env = {k: v for k, v in os.environ.items() if k != "H78_GW_TOKEN"}
    for args in (["--config", str(cfg), "--check"], ["--config", str(cfg)]):  # --check, and the start
        done = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env=env, check=False)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "uplink.http.token: environment variable H78_GW_TOKEN is not set" in done.stderr, done.stderr


def test_a_set_variable_is_used_and_a_doubled_dollar_is_literal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config_file(tmp_path)
    text = cfg.read_text().replace("[uplink.http]\n", f"[uplink.http]\n{TOKEN}\n")
    text = text.replace('host = "127.0.0.1"',
                        'host = "${H78_GW_BROKER}"\npassword = "pa$${ss"\nusername = "gw"')
    cfg.write_text(text)
    monkeypatch.setenv("H78_GW_TOKEN", "s3cret-token")
    monkeypatch.setenv("H78_GW_BROKER", "127.0.0.9")
    loaded = load(cfg, on_this_host=True)
    assert loaded.uplink.http.token is not None
    assert loaded.uplink.http.token.get_secret_value() == "s3cret-token"
    assert loaded.broker.host == "127.0.0.9"
    assert loaded.broker.password is not None and loaded.broker.password.get_secret_value() == "pa${ss"
    done = _gateway(["--config", str(cfg), "--check"])
    assert done.returncode == 0, done.stderr
    assert "broker 127.0.0.9:1883" in done.stdout, done.stdout
    monkeypatch.delenv("H78_GW_BROKER")
    with pytest.raises(ConfigError, match=r"broker\.host: environment variable H78_GW_BROKER is not set"):
        load(cfg)
