"""Secrets in plaintext (security review M4): a broker password without TLS or a bearer token over
``http://`` to a host that is not loopback is accepted with one WARNING line per case naming the
key and the host — at ``--check`` (exit 0) and in the log at start — unless that connection says
``allow_plaintext = true``; loopback and TLS give none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from tests.support.certs import self_signed
from tests.support.processes import stderr_until

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, *, broker: str = "10.20.30.40", ingest: str = "http://10.20.30.40:8080",
            broker_extra: str = 'username = "gw"\npassword = "broker-secret"',
            http_extra: str = 'token = "ingest-secret"') -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(f'''id = "gw-1"
site = "plant"
deadletter_path = "{tmp_path / 'dl.jsonl'}"

[broker]
host = "{broker}"
keepalive_s = 5
{broker_extra}

[buffer]
path = "{tmp_path / 'buffer.sqlite'}"

[uplink.http]
url = "{ingest}"
{http_extra}

[health]
port = 0
''')
    return path


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("WARNING")]


def test_the_reviews_case_warns_once_per_secret_naming_key_and_host(tmp_path: Path) -> None:
    path = _config(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["gateway", "--config", str(path), "--check"],
                 ["gateway", "check-config", "--config", str(path)]):
        done = subprocess.run([sys.executable, "-m", "zhizao", *argv], capture_output=True, text=True,
                              env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "configuration OK" in done.stdout
        warnings = _warnings(done.stderr)
        assert len(warnings) == 2, done.stderr
        assert warnings[0].startswith("WARNING broker.password: the MQTT password goes to 10.20.30.40:1883 "
                                      "unencrypted (MQTT without TLS)"), warnings
        assert warnings[1].startswith("WARNING uplink.http.token: the bearer token goes to 10.20.30.40:8080 "
                                      "unencrypted (http://)"), warnings
        assert all("allow_plaintext = true" in w for w in warnings)
        assert "broker-secret" not in done.stderr + done.stdout and "ingest-secret" not in done.stderr


def test_allow_plaintext_silences_each_connection_on_its_own(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, broker_extra='username = "gw"\npassword = "p"\nallow_plaintext = true')
    assert main(["--config", str(path), "--check"]) == 0
    assert [w.split(":")[0] for w in _warnings(capsys.readouterr().err)] == ["WARNING uplink.http.token"]

    path = _config(tmp_path, http_extra='token = "t"\nallow_plaintext = true')
    assert main(["--config", str(path), "--check"]) == 0
    assert [w.split(":")[0] for w in _warnings(capsys.readouterr().err)] == ["WARNING broker.password"]

    path = _config(tmp_path, broker_extra='username = "gw"\npassword = "p"\nallow_plaintext = true',
                   http_extra='token = "t"\nallow_plaintext = true')
    assert main(["--config", str(path), "--check"]) == 0
    out = capsys.readouterr()
    assert "configuration OK" in out.out and _warnings(out.err) == []


@pytest.mark.parametrize(("broker", "ingest"), [
    ("127.0.0.1", "http://127.0.0.1:8080"),
    ("localhost", "http://localhost:8080"),
    ("127.1.2.3", "http://[::1]:8080"),
    ("::1", "http://127.0.0.53:8080"),
])
def test_loopback_gives_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str], broker: str,
                                   ingest: str) -> None:
    assert main(["--config", str(_config(tmp_path, broker=broker, ingest=ingest)), "--check"]) == 0
    assert _warnings(capsys.readouterr().err) == []


def test_tls_or_no_secret_gives_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, _ = self_signed(tmp_path)
    tls = f'username = "gw"\npassword = "p"\nport = 8883\n[broker.tls]\nca_file = "{cert}"'
    path = _config(tmp_path, broker_extra=tls, ingest="https://10.20.30.40:8443")
    assert main(["--config", str(path), "--check"]) == 0
    assert _warnings(capsys.readouterr().err) == []
    # no password, no token: nothing secret crosses (a username alone is not a secret)
    path = _config(tmp_path, broker_extra='username = "gw"', http_extra="")
    assert main(["--config", str(path), "--check"]) == 0
    assert _warnings(capsys.readouterr().err) == []


def test_token_file_is_named_by_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "gw.token"
    token.write_text("t\n")
    path = _config(tmp_path, broker_extra="", http_extra=f'token_file = "{token}"',
                   ingest="http://ingest.plant1.example:8080")
    assert main(["--config", str(path), "--check"]) == 0
    assert _warnings(capsys.readouterr().err) == [
        "WARNING uplink.http.token_file: the bearer token goes to ingest.plant1.example:8080 unencrypted "
        "(http://); use https://, or set allow_plaintext = true on this connection if its network is trusted"]


def test_the_warnings_are_logged_at_start(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1: never anyone's broker or ingest; the lines come before any connect
    path = _config(tmp_path, broker="192.0.2.1", ingest="http://192.0.2.2:8080")
    lines = stderr_until(["gateway", "--config", str(path)], "uplink.http.token")
    logged = [line for line in lines if " WARNING gateway: " in line]
    assert len(logged) == 2, lines
    assert "broker.password: the MQTT password goes to 192.0.2.1:1883 unencrypted" in logged[0]
    assert "uplink.http.token: the bearer token goes to 192.0.2.2:8080 unencrypted" in logged[1]
