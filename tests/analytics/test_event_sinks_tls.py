"""Event sinks and secrets in transit: the MQTT sink speaks TLS (``[sinks.mqtt.tls]``, the
``tls`` table of every MQTT client of zhizao, :mod:`zhizao.tls`) to a real Mosquitto with a
password file, and the sinks name a secret that would cross the network unencrypted to a host
that is not loopback, as the edge agent and the gateway do: one WARNING per case at start
(``build_emitter``) and from ``zhizao analytics serve --check``; ``allow_plaintext = true``
silences it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from analytics.cli import main as analytics_main
from analytics.events import EpisodeTracker, SinksConfig, build_emitter
from analytics.events.sinks.mqtt import MqttSink
from tests.support.certs import self_signed, tls_password_broker
from tests.support.servers import Mosquitto
from zhizao.errors import SecurityError
from zhizao.events import Event, EventSource
from zhizao.topics import ALERTS_FILTER, event_topic

ASSET = "plant1/a1/line1/cnc-1"
LOGGER = "analytics.events.config"
MQTT_LINE = ("sinks.mqtt.password: the MQTT password goes to 10.20.30.40:1883 unencrypted (MQTT without "
             "TLS); add a tls table (port 8883 usually), or set allow_plaintext = true on this connection "
             "if its network is trusted")


def _events() -> list[Event]:
    tracker = EpisodeTracker(source=EventSource.KPI, rule="oee-low", threshold=0.6)
    return tracker.observe(ASSET, datetime(2026, 11, 23, 8, tzinfo=UTC), True, 0.4)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, int, Path]]:
    """Mosquitto with a password file (user ``analytics``, password ``secret``) on its plain port
    and on a TLS port (certificate for 127.0.0.1, its own CA): ``(broker, tls_port, ca_file)``."""
    with tls_password_broker(tmp_path, "analytics") as broker:
        yield broker


def _mqtt(port: int, **extra: Any) -> SinksConfig:
    return SinksConfig.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": port, "username": "analytics", "password": "secret", **extra},
        "max_attempts": 2})


async def _retained_over_tls(port: int, ca: Path) -> Event:
    """The retained alert on its rule's topic under ``ASSET``, read by a subscriber that itself uses TLS."""
    async with aiomqtt.Client("127.0.0.1", port, username="analytics", password="secret",
                              tls_params=aiomqtt.TLSParameters(ca_certs=str(ca))) as c:
        await c.subscribe(ALERTS_FILTER, qos=1)
        async for msg in c.messages:
            assert str(msg.topic) == event_topic(_events()[0]) and msg.retain
            return Event.model_validate_json(bytes(msg.payload))
    raise AssertionError("no message")


async def test_an_alert_is_delivered_over_tls(
    tls_broker: tuple[Mosquitto, int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, tls_port, ca = tls_broker
    cfg = _mqtt(tls_port, tls={"ca_file": str(ca)})
    events = _events()
    with caplog.at_level(logging.WARNING, LOGGER):
        emitter = build_emitter(cfg)
    assert not caplog.records  # TLS (and loopback): nothing to warn about
    async with emitter:
        assert await emitter.emit(events) == {"mqtt": True}
    got = await asyncio.wait_for(_retained_over_tls(tls_port, ca), 10)
    assert got.id == events[0].id and got.state == events[0].state


async def test_a_broker_the_ca_does_not_vouch_for_gets_nothing(
    tmp_path: Path, tls_broker: tuple[Mosquitto, int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The broker's certificate is verified: signed by another CA, no alert goes out (counted as
    failed, the reason logged)."""
    _, tls_port, _ = tls_broker
    other_ca, _ = self_signed(tmp_path, "other")
    caplog.set_level(logging.INFO, "analytics.events.emitter")
    async with build_emitter(_mqtt(tls_port, tls={"ca_file": str(other_ca)})) as emitter:
        assert await asyncio.wait_for(emitter.emit(_events()), 30) == {"mqtt": False}
        assert emitter.failed == {"mqtt": 1}
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_a_tls_file_that_cannot_be_used_is_a_security_error_naming_it(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "client")
    cfg = _mqtt(8883, tls={"ca_file": str(cert), "cert_file": str(cert), "key_file": str(key)})
    assert cfg.mqtt is not None and cfg.mqtt.tls is not None
    build_emitter(cfg)
    key.write_text("not a key")
    with pytest.raises(SecurityError, match=f"cannot use the TLS files .*tls.key_file = {key}"):
        build_emitter(cfg)
    cert.unlink()
    with pytest.raises(SecurityError, match=f"^tls.ca_file: file not found: {cert}$"):
        MqttSink("127.0.0.1", 8883, tls=cfg.mqtt.tls)


def test_tls_files_are_checked_with_the_config(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="file not found"):
        _mqtt(8883, tls={"ca_file": str(tmp_path / "nope.pem")})
    cert, _ = self_signed(tmp_path, "client")
    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        _mqtt(8883, tls={"cert_file": str(cert)})


def _warnings(doc: dict[str, Any]) -> list[str]:
    return SinksConfig.model_validate(doc).plaintext_warnings()


def test_secrets_in_plaintext_to_a_host_that_is_not_loopback_are_named(tmp_path: Path) -> None:
    remote = {"host": "10.20.30.40", "username": "analytics", "password": "secret"}
    assert _warnings({"mqtt": remote}) == [MQTT_LINE]
    ca, _ = self_signed(tmp_path)
    for quiet in ({**remote, "tls": {"ca_file": str(ca)}, "port": 8883},  # TLS
                  {**remote, "allow_plaintext": True},                     # a trusted network, said so
                  {**remote, "host": "127.0.0.1"}, {**remote, "host": "::1"},
                  {**remote, "host": "localhost"},                         # never leaves the machine
                  {"host": "10.20.30.40"}):                                # no password
        assert _warnings({"mqtt": quiet}) == [], quiet

    hook = "http://10.20.30.40:8080/hook"
    lines = _warnings({"webhooks": [
        {"url": "https://hooks.example/ok", "secret": "s", "headers": {"Authorization": "Bearer x"}},
        {"url": hook, "secret": "s"},
        {"url": hook, "headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "X-Source": "zhizao"}},
        {"url": "http://user:pw@10.20.30.40/hook?token=t&site=plant1"},
        {"url": hook, "secret": "s", "headers": {"X-Auth-Token": "t"}, "allow_plaintext": True},
        {"url": "http://127.0.0.1:8080/hook", "secret": "s", "headers": {"Authorization": "Bearer x"}},
        {"url": hook, "headers": {"X-Source": "zhizao"}},  # nothing secret in it
    ]})
    assert lines == [
        "sinks.webhooks[1].secret: the HMAC-signed payload goes to 10.20.30.40:8080 unencrypted (http://); "
        "use https:// (the secret itself is not sent, but anyone on the path reads the events and can "
        "replay a delivery within the receiver's tolerance), or set allow_plaintext = true on this "
        "connection if its network is trusted",
        "sinks.webhooks[2].headers: the header Authorization, X-Api-Key goes to 10.20.30.40:8080 "
        "unencrypted (http://); use https://, or set allow_plaintext = true on this connection if its "
        "network is trusted",
        "sinks.webhooks[3].url: the password in the URL goes to 10.20.30.40 unencrypted (http://); use "
        "https://, or set allow_plaintext = true on this connection if its network is trusted",
        "sinks.webhooks[3].url: the query parameter token goes to 10.20.30.40 unencrypted (http://); use "
        "https://, or set allow_plaintext = true on this connection if its network is trusted",
    ]
    assert _warnings({"ingest": {"url": "http://10.20.30.40:8080", "token": "t0k"}}) == [
        "sinks.ingest.token: the bearer token goes to 10.20.30.40:8080 unencrypted (http://); use "
        "https://, or set allow_plaintext = true on this connection if its network is trusted"]
    for quiet_ingest in ({"url": "https://ingest.example", "token": "t"},
                         {"url": "http://10.20.30.40:8080", "token": "t", "allow_plaintext": True},
                         {"url": "http://10.20.30.40:8080"}):
        assert _warnings({"ingest": quiet_ingest}) == []


def test_the_warnings_are_logged_at_start_once_each(caplog: pytest.LogCaptureFixture) -> None:
    cfg = SinksConfig.model_validate({
        "mqtt": {"host": "10.20.30.40", "username": "analytics", "password": "pw-9f3c"},
        "webhooks": [{"url": "http://10.20.30.40:8080/hook", "secret": "hook-key-77"}]})
    with caplog.at_level(logging.WARNING, LOGGER):
        build_emitter(cfg)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert logged == cfg.plaintext_warnings() and logged[0] == MQTT_LINE and len(logged) == 2
    assert "pw-9f3c" not in caplog.text and "hook-key-77" not in caplog.text  # named, never shown
    caplog.clear()
    quiet = SinksConfig.model_validate({
        "mqtt": {"host": "10.20.30.40", "username": "analytics", "password": "secret",
                 "allow_plaintext": True},
        "webhooks": [{"url": "http://10.20.30.40:8080/hook", "secret": "s", "allow_plaintext": True}]})
    with caplog.at_level(logging.WARNING, LOGGER):
        build_emitter(quiet)
    assert not caplog.records


def test_serve_check_prints_the_warnings_after_its_ok_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``zhizao analytics serve --check``: exit 0 (never a refusal), one WARNING line per case on
    stderr; none once the connection says ``allow_plaintext = true``."""
    base = 'scopes = ["plant1"]\n[ingest]\nurl = "http://127.0.0.1:8080"\n'
    remote = '[sinks.mqtt]\nhost = "10.20.30.40"\nusername = "analytics"\npassword = "secret"\n'
    path = tmp_path / "scoring.toml"
    path.write_text(base + remote)
    assert analytics_main(["serve", "--config", str(path), "--check"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: ok") and err.splitlines() == [f"WARNING {MQTT_LINE}"]
    path.write_text(base + remote + "allow_plaintext = true\n")
    assert analytics_main(["serve", "--config", str(path), "--check"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: ok") and err == ""


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_the_deployed_scoring_configs_decide_plaintext_in_the_file(where: str) -> None:
    """The compose and k8s stacks reach their broker by a service name over plain MQTT: a decision
    written in the file with its reason (as for the gateway and the agent), not a warning at each
    start."""
    from analytics.scoring.service.config import load_service_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_service_config(root / "deploy" / where / "config" / "scoring.toml")
    assert cfg.sinks.mqtt is not None and cfg.sinks.mqtt.password and cfg.sinks.mqtt.tls is None
    assert cfg.sinks.mqtt.allow_plaintext and cfg.sinks.plaintext_warnings() == []
    assert cfg.ingest is not None and cfg.ingest.url.startswith("http://") and cfg.ingest.token_file
    assert cfg.ingest.allow_plaintext and cfg.plaintext_warnings() == []


def test_the_scoring_services_own_ingest_token_is_named_over_plain_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The ``[ingest]`` table's token reads and writes every machine's data: over ``http://`` to a
    host that is not loopback it is one warning with ``serve --check`` and at start (where it also
    carries the events when no ``[sinks.ingest]`` is set), none on loopback, https or with
    ``allow_plaintext``."""
    from analytics.scoring.service.config import load_service_config
    from analytics.scoring.service.service import make_emitter, make_io
    from analytics.scoring.service.source import StoreIO

    path = tmp_path / "scoring.toml"
    line = ("ingest.token_file: the bearer token goes to ingest.plant:8080 unencrypted (http://); use "
            "https://, or set allow_plaintext = true on this connection if its network is trusted")
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    for url, extra, expected in (
        ("http://ingest.plant:8080", "", [f"WARNING {line}"]),
        ("http://ingest.plant:8080", "allow_plaintext = true\n", []),
        ("https://ingest.plant:8443", "", []),
        ("http://127.0.0.1:8080", "", []),
    ):
        path.write_text(f'scopes = ["plant1"]\n[ingest]\nurl = "{url}"\ntoken_file = "{token}"\n{extra}')
        assert analytics_main(["serve", "--config", str(path), "--check"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"{path}: ok") and err.splitlines() == expected, (url, extra, err)
    path.write_text(f'scopes = ["plant1"]\n[ingest]\nurl = "http://ingest.plant:8080"\n'
                    f'token_file = "{token}"\n')
    cfg = load_service_config(path)
    io = make_io(cfg)
    assert not isinstance(io, StoreIO)
    with caplog.at_level(logging.WARNING):
        make_emitter(cfg, io)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [line]
