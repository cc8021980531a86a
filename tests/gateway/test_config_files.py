"""Files named in the gateway config (broker TLS, ingest CA bundle and client certificate): a missing
one is a config error naming its key (``--check`` and the run, exit 2); one unreadable later is a
one-line failure naming it (exit 1), never a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load
from gateway.testing import write_config
from tests.support.certs import self_signed
from zhizao.errors import ConfigError


def _config(tmp_path: Path, broker_tls: str = "", http: str = "") -> Path:
    path = write_config(tmp_path / "gw.toml", broker_port=1, ingest_url="https://127.0.0.1:1")
    text = path.read_text().replace("keepalive_s = 5\n", f"keepalive_s = 5\n{broker_tls}\n")
    path.write_text(text.replace("[uplink.http]\n", f"[uplink.http]\n{http}\n"))
    return path


def test_missing_files_name_their_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nope = tmp_path / "nope"
    path = _config(
        tmp_path,
        broker_tls=f'[broker.tls]\nca_file = "{nope}/ca.pem"\ncert_file = "{nope}/gw.crt"\n'
                   f'key_file = "{nope}/gw.key"',
        http=f'verify = "{nope}/bundle.pem"\nclient_cert = "{nope}/c.crt"\nclient_key = "{nope}/c.key"',
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    assert dict(info.value.problems) == {
        "broker.tls.ca_file": f"file not found: {nope}/ca.pem",
        "broker.tls.cert_file": f"file not found: {nope}/gw.crt",
        "broker.tls.key_file": f"file not found: {nope}/gw.key",
        "uplink.http.verify": f"file not found: {nope}/bundle.pem",
        "uplink.http.client_cert": f"file not found: {nope}/c.crt",
        "uplink.http.client_key": f"file not found: {nope}/c.key",
    }
    for argv in (["--config", str(path), "--check"], ["--config", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"broker.tls.ca_file: file not found: {nope}/ca.pem" in err, err
        assert f"uplink.http.verify: file not found: {nope}/bundle.pem" in err


def test_existing_files_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = self_signed(tmp_path)
    path = _config(tmp_path, broker_tls=f'[broker.tls]\nca_file = "{cert}"\ncert_file = "{cert}"\n'
                                        f'key_file = "{key}"',
                   http=f'verify = "{cert}"\nclient_cert = "{cert}"\nclient_key = "{key}"')
    assert main(["--config", str(path), "--check"]) == 0, capsys.readouterr().err
    assert "configuration OK" in capsys.readouterr().out


def test_a_file_unreadable_at_start_is_one_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The ingest token file (read at start) is missing: exit 1 with one line naming it."""
    path = _config(tmp_path, http=f'token_file = "{tmp_path}/gone.token"')
    with caplog.at_level(logging.INFO):
        assert main(["--config", str(path)]) == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and not errors[0].exc_info
    assert f"cannot read token_file {tmp_path}/gone.token" in errors[0].getMessage()


def test_broker_tls_files_gone_or_bad_after_validation_raise_security_errors(tmp_path: Path) -> None:
    """What the intake's supervisor then reports on one line (the same helper serves the agent)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_agent.connectors.mqtt.client import apply_auth_and_tls
    from zhizao.errors import SecurityError

    cert, key = self_signed(tmp_path)
    tls = load(_config(tmp_path, broker_tls=f'[broker.tls]\nca_file = "{cert}"\ncert_file = "{cert}"\n'
                                            f'key_file = "{key}"')).broker.tls
    assert tls is not None
    apply_auth_and_tls(mqtt.Client(CallbackAPIVersion.VERSION2), None, None, tls)
    key.write_text("not a key")
    with pytest.raises(SecurityError, match=f"cannot use the TLS files .*tls.key_file = {key}"):
        apply_auth_and_tls(mqtt.Client(CallbackAPIVersion.VERSION2), None, None, tls)
    cert.unlink()
    with pytest.raises(SecurityError, match=f"^tls.ca_file: file not found: {cert}$"):
        apply_auth_and_tls(mqtt.Client(CallbackAPIVersion.VERSION2), None, None, tls)
