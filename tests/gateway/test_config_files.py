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
    """The ingest token file (read at start) exists but cannot be read as text: exit 1 with one
    line naming it. (A missing one is a config error naming its key, exit 2: the test above.)"""
    token = tmp_path / "bad.token"
    token.write_bytes(b"\xff\xfe\x00")
    path = _config(tmp_path, http=f'token_file = "{token}"')
    with caplog.at_level(logging.INFO):
        assert main(["--config", str(path)]) == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and not errors[0].exc_info
    assert f"cannot read token_file {token}" in errors[0].getMessage()


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


def test_buffer_deadletter_and_token_paths_are_checked_on_this_host(tmp_path: Path) -> None:
    """``load(path, on_this_host=True)``: a typo in the buffer or dead-letter folder, or a missing
    token file, is a config error naming its key (folders are never created); without it a config
    for another machine (a container's) validates here."""
    vra = tmp_path / "vra"
    path = _config(tmp_path, http=f'token_file = "{tmp_path}/etc/gateway.token"')
    text = path.read_text()
    text = text.replace(f'deadletter_path = "{tmp_path}/', f'deadletter_path = "{vra}/dl/')
    text = text.replace(f'path = "{tmp_path}/gw-1-buffer', f'path = "{vra}/lib/gw-1-buffer')
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path, on_this_host=True)
    assert dict(info.value.problems) == {
        "deadletter_path": f"folder not found: {vra}/dl (folders are not created: check the path)",
        "buffer.path": f"folder not found: {vra}/lib (folders are not created: check the path)",
        "uplink.http.token_file": f"file not found: {tmp_path}/etc/gateway.token",
    }
    assert not vra.exists()
    for argv in (["--config", str(path), "--check"], ["--config", str(path)]):  # the CLI checks this host
        assert main(argv) == 2
        assert not vra.exists()
    assert load(path).buffer.path == vra / "lib" / "gw-1-buffer.sqlite"  # not on this host: as given
    (vra / "dl").mkdir(parents=True)
    (vra / "lib").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "gateway.token").write_text("t0k3n\n")
    assert load(path, on_this_host=True).uplink.http.token_file == tmp_path / "etc" / "gateway.token"


def test_default_buffer_and_deadletter_paths_are_where_every_release_kept_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "gw.toml"
    path.write_text('id = "gw-1"\nsite = "plant"\n[broker]\nhost = "127.0.0.1"\n'
                    '[uplink.http]\nurl = "http://127.0.0.1:1"\n')
    """An upgraded gateway whose config relied on the defaults finds its backlog (a working-directory
    default stranded 300 samples in the upgrade review)."""
    cfg = load(path)
    assert cfg.buffer.path == Path("/var/lib/zhizao/gateway-buffer.sqlite")
    assert cfg.deadletter_path == Path("/var/lib/zhizao/gateway-deadletter.jsonl")
    path.write_text(path.read_text() + "[buffer]\nmax_bytes = 4096\n")
    assert load(path).buffer.path == Path("/var/lib/zhizao/gateway-buffer.sqlite")
    if not Path("/var/lib/zhizao").exists():  # on a box without it: a config error naming the keys
        with pytest.raises(ConfigError) as info:
            load(path, on_this_host=True)
        assert {"buffer.path", "deadletter_path"} <= dict(info.value.problems).keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gw.toml"], "loading creates nothing"
