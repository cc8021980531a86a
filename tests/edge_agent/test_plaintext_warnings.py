"""Secrets in plaintext (security review M4), through ``zhizao agent check-config`` and the run:

- an MQTT password without TLS (connector or uplink) or a bearer token over ``http://`` to a host
  that is not loopback: accepted (exit 0) with one WARNING line per case naming the key and the
  host, logged again at start; ``allow_plaintext = true`` on that connection silences it;
- loopback (127.0.0.0/8, ::1, localhost) and TLS: nothing;
- an OPC UA username identity over security mode None to a host that is not loopback: refused
  (exit 2, naming the connector and the host) unless the connector says ``allow_plaintext = true``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cli import main
from tests.support.certs import self_signed
from tests.support.processes import stderr_until

ROOT = Path(__file__).resolve().parents[2]
FP = "sha256:" + ":".join(["AB"] * 32)


REMOTE_HTTP = 'url = "http://10.20.30.40:8080"\ntoken = "t0k"'
QUIET_HTTP = 'url = "http://10.20.30.40:8080"\ntoken = "t"\nallow_plaintext = true'


def _config(tmp_path: Path, connectors: str, uplink: str = REMOTE_HTTP) -> Path:
    path = tmp_path / "agent.toml"
    if "type =" not in uplink:
        uplink = f'type = "http"\n{uplink}'
    path.write_text(f'''[agent]
id = "cell-1"
state_dir = "{tmp_path}"

[health]
enabled = false

{connectors}

[uplink]
{uplink}
''')
    return path


def _mqtt(host: str = "10.20.30.40", extra: str = 'username = "agent"\npassword = "mqtt-secret"',
          name: str = "vendor") -> str:
    return f'''[[connectors]]
type = "mqtt"
name = "{name}"
host = "{host}"
{extra}
[[connectors.mappings]]
name = "x"
topic = "acme/+machine/telemetry"
asset = "plant1/a1/line1/{{machine}}"
values = {{ layout = "object", path = "metrics" }}
'''


def _opcua(endpoint: str = "opc.tcp://10.20.30.40:4840", extra: str = "",
           security: str = 'mode = "None"') -> str:
    return f'''[[connectors]]
type = "opcua"
name = "plc"
endpoint = "{endpoint}"
browse = [{{ pattern = "Objects/plant1/*/*/*/*" }}]
{extra}
[connectors.security]
{security}
[connectors.identity]
type = "username"
username = "agent"
password = "opc-secret"
'''


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(["check-config", "--config", str(path)])
    out = capsys.readouterr()
    return code, out.out, [line for line in out.err.splitlines() if line.startswith("WARNING")]


def test_check_config_warns_once_per_secret_naming_key_and_host(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, _mqtt() + _mqtt("broker.plant1.example", name="second"))
    code, out, warnings = _check(path, capsys)
    assert code == 0 and ": OK (" in out
    assert warnings == [
        "WARNING connectors[0].mqtt.password: the MQTT password goes to 10.20.30.40:1883 unencrypted (MQTT "
        "without TLS); add a tls table (port 8883 usually), or set allow_plaintext = true on this connection "
        "if its network is trusted",
        "WARNING connectors[1].mqtt.password: the MQTT password goes to broker.plant1.example:1883 "
        "unencrypted (MQTT without TLS); add a tls table (port 8883 usually), or set allow_plaintext = true "
        "on this connection if its network is trusted",
        "WARNING uplink.http.token: the bearer token goes to 10.20.30.40:8080 unencrypted (http://); use "
        "https://, or set allow_plaintext = true on this connection if its network is trusted",
    ]


def test_mqtt_uplink_password_and_a_password_in_the_url(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    uplink = 'type = "mqtt"\nhost = "fd00::10"\nport = 1884\nusername = "agent"\npassword = "p"'
    code, _, warnings = _check(_config(tmp_path, _mqtt("127.0.0.1"), uplink), capsys)
    assert code == 0
    assert [w.split(" unencrypted")[0] for w in warnings] == [
        "WARNING uplink.mqtt.password: the MQTT password goes to [fd00::10]:1884"]
    path = _config(tmp_path, _mqtt("127.0.0.1"), 'url = "http://u:pw@ingest.local"')
    code, _, warnings = _check(path, capsys)
    assert code == 0
    assert [w.split(" unencrypted")[0] for w in warnings] == [
        "WARNING uplink.http.url: the password in the URL goes to ingest.local"]


def test_allow_plaintext_silences_only_its_connection(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    quiet = 'username = "agent"\npassword = "p"\nallow_plaintext = true'
    code, _, warnings = _check(_config(tmp_path, _mqtt(extra=quiet)), capsys)
    assert code == 0 and [w.split(":")[0] for w in warnings] == ["WARNING uplink.http.token"]
    code, _, warnings = _check(_config(tmp_path, _mqtt(), QUIET_HTTP), capsys)
    assert code == 0 and [w.split(":")[0] for w in warnings] == ["WARNING connectors[0].mqtt.password"]
    code, out, warnings = _check(_config(tmp_path, _mqtt(extra=quiet), QUIET_HTTP), capsys)
    assert code == 0 and ": OK (" in out and warnings == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.200.0.9", "localhost", "LOCALHOST.", "::1"])
def test_loopback_gives_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str) -> None:
    url = f"http://{'[::1]' if host == '::1' else host}:8080"
    code, _, warnings = _check(_config(tmp_path, _mqtt(host), f'url = "{url}"\ntoken = "t"'), capsys)
    assert code == 0 and warnings == []


def test_tls_gives_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, _ = self_signed(tmp_path)
    tls = f'username = "agent"\npassword = "p"\nport = 8883\ntls = {{ ca_file = "{cert}" }}'
    path = _config(tmp_path, _mqtt(extra=tls), 'url = "https://10.20.30.40:8443"\ntoken = "t"')
    code, _, warnings = _check(path, capsys)
    assert code == 0 and warnings == []


def test_opcua_username_over_mode_none_is_refused_unless_allowed(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    https = 'url = "https://ingest.example:8443"\ntoken = "t"'
    assert main(["check-config", "--config", str(_config(tmp_path, _opcua(), https))]) == 2
    err = capsys.readouterr().err
    assert ("connectors[0].opcua: identity type 'username' with security mode 'None' would send the "
            "password to 10.20.30.40:4840 unprotected") in err, err
    assert "allow_plaintext = true" in err and "opc-secret" not in err
    # allowed explicitly: accepted, nothing printed (the key is the operator's statement)
    code, out, warnings = _check(_config(tmp_path, _opcua(extra="allow_plaintext = true"), https), capsys)
    assert code == 0 and ": OK (" in out and warnings == []
    # loopback, or a secure channel: accepted without a word
    code, _, warnings = _check(_config(tmp_path, _opcua("opc.tcp://localhost:4840/sim"), https), capsys)
    assert code == 0 and warnings == []
    secure = f'mode = "SignAndEncrypt"\npolicy = "Basic256Sha256"\nserver_cert_fingerprints = ["{FP}"]'
    code, _, warnings = _check(_config(tmp_path, _opcua(security=secure), https), capsys)
    assert code == 0 and warnings == []


def test_is_loopback_host() -> None:
    from zhizao.config import is_loopback_host

    for host in ("127.0.0.1", "127.255.255.254", "localhost", "Localhost.", "::1", "[::1]",
                 "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"):
        assert is_loopback_host(host), host
    for host in ("10.20.30.40", "128.0.0.1", "localhost.example.com", "127.0.0.1.nip.io", "::", "0.0.0.0",
                 "::ffff:10.0.0.1", "fd00::1", ""):
        assert not is_loopback_host(host), host


def test_the_warnings_are_logged_at_start(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1: nobody's broker or ingest; the lines come before any connect
    path = _config(tmp_path, _mqtt("192.0.2.1"), 'url = "http://192.0.2.2:8080"\ntoken = "t"')
    lines = stderr_until(["agent", "--config", str(path)], "uplink.http.token")
    logged = [line for line in lines if " WARNING edge_agent: " in line]
    assert len(logged) == 2, lines
    assert "connectors[0].mqtt.password: the MQTT password goes to 192.0.2.1:1883 unencrypted" in logged[0]
    assert "uplink.http.token: the bearer token goes to 192.0.2.2:8080 unencrypted" in logged[1]
