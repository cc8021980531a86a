"""The agent config and ``zhizao agent check-config``: the sample is valid, mistakes are named by key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import load_agent_config
from zhizao.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "edge_agent" / "sample-agent.toml"


def test_sample_config_is_valid() -> None:
    cfg, digest = load_agent_config(SAMPLE)
    assert cfg.agent.id == "cell-1" and digest.startswith("sha256:")
    assert [c.type for c in cfg.connectors] == ["opcua", "mqtt"]
    # defaults in the working directory (the systemd unit's is /var/lib/zhizao): out of the box
    assert cfg.agent.state_dir == Path(".")
    assert cfg.buffer.path == Path("buffer.sqlite") and cfg.deadletter.path == Path("deadletter.jsonl")
    assert len(cfg.connectors[1].mappings) == 2  # type: ignore[union-attr]


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(SAMPLE)]) == 0
    assert "OK" in capsys.readouterr().out


BAD = """
[agent]
id = "bad id!"
[buffer]
overflow = "drop_newest"
[[connectors]]
type = "opcua"
endpoint = "http://wrong"
browse = [{ pattern = "Objects/*" }]
[connectors.security]
mode = "SignAndEncrypt"
[[connectors]]
type = "mqtt"
host = "broker"
mappings = [{ name = "x", topic = "a/#/b", asset = "p/a/l/{machine}" }]
[uplink]
type = "http"
url = "ftp://x"
tokne = "typo"
"""


def test_malformed_config_lists_every_problem_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    keys = {k for k, _ in info.value.problems}
    for key in (
        "agent.id",
        "buffer.overflow",
        "connectors[0].opcua.endpoint",
        "connectors[0].opcua.security",
        "connectors[1].mqtt.mappings[0].topic",
        "uplink.http.url",
        "uplink.http.tokne",
    ):
        assert key in keys, (key, keys)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "connectors[0].opcua.security" in err and "needs a policy" in err and "unknown key" in err


def test_toml_syntax_error_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[agent\nid = 1")
    assert main(["--config", str(path)]) == 2
    assert "TOML syntax error" in capsys.readouterr().err
    assert main(["check-config", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read file" in capsys.readouterr().err


def test_zhizao_agent_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "zhizao.cli", "agent", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=30,
    )
    assert out.returncode == 0 and "check-config" in out.stdout and "certs" in out.stdout


def test_every_plugin_sample_config_is_valid() -> None:
    import tomllib

    from edge_agent.connectors.mqtt import MqttConnectorConfig
    from edge_agent.connectors.opcua import OpcUaConnectorConfig
    from edge_agent.uplinks.http import HttpUplinkConfig
    from edge_agent.uplinks.mqtt import MqttUplinkConfig

    base = ROOT / "edge_agent"
    opc = tomllib.loads((base / "connectors/opcua/sample.toml").read_text())["connectors"][0]
    assert OpcUaConnectorConfig.model_validate(opc).browse
    mq = tomllib.loads((base / "connectors/mqtt/sample.toml").read_text())["connectors"][0]
    assert MqttConnectorConfig.model_validate(mq).mappings[0].name == "acme"
    assert HttpUplinkConfig.model_validate(
        tomllib.loads((base / "uplinks/http/sample.toml").read_text())["uplink"]
    )
    assert MqttUplinkConfig.model_validate(
        tomllib.loads((base / "uplinks/mqtt/sample.toml").read_text())["uplink"]
    )


def test_certs_creates_the_client_certificate_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SAMPLE.read_text().replace('state_dir = "."', f'state_dir = "{tmp_path}"')
    assert text != SAMPLE.read_text()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(text)
    assert main(["certs", "--config", str(cfg)]) == 0
    first = capsys.readouterr().out
    assert "fingerprint:        sha256:" in first and "urn:zhizao:agent:cell-1" in first
    assert main(["certs", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out == first, "the same certificate on every run"
    assert (tmp_path / "pki" / "sim-opcua-cert.der").exists()


# -- files named in the config: checked when it is validated, named when they fail later -------
def _agent_toml(tmp_path: Path, *, mqtt_tls: str, http_tls: str, opcua_security: str = "",
                identity: str = "") -> Path:
    (tmp_path / "state").mkdir(exist_ok=True)
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[agent]
id = "cell-1"
state_dir = "{tmp_path / 'state'}"
[health]
enabled = false
[[connectors]]
type = "opcua"
endpoint = "opc.tcp://127.0.0.1:1/x"
browse = [{{ pattern = "Objects/*" }}]
[connectors.security]
{opcua_security}
[connectors.identity]
{identity}
[[connectors]]
type = "mqtt"
name = "vendor-mqtt"
host = "127.0.0.1"
mappings = [{{ name = "x", topic = "a/+machine/b", asset = "p/a/l/{{machine}}" }}]
[connectors.tls]
{mqtt_tls}
[uplink]
type = "http"
url = "https://127.0.0.1:1"
{http_tls}
""")
    return path


def test_missing_tls_and_security_files_are_config_errors_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config and the run itself (exit 2, before anything connects) name each missing file."""
    nope = tmp_path / "nope"
    path = _agent_toml(
        tmp_path,
        mqtt_tls=f'ca_file = "{nope}/ca.pem"\ncert_file = "{nope}/agent.crt"\nkey_file = "{tmp_path}"',
        http_tls=f'verify = "{nope}/bundle.pem"\nclient_cert = "{nope}/c.crt"\nclient_key = "{nope}/c.key"',
        opcua_security=f'mode = "SignAndEncrypt"\npolicy = "Basic256Sha256"\ntrust_dir = "{nope}/trusted"',
        identity=f'type = "certificate"\ncert = "{nope}/user.der"\nkey = "{nope}/user.pem"',
    )
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    assert dict(info.value.problems) == {
        "connectors[0].opcua.security.trust_dir": f"folder not found: {nope}/trusted",
        "connectors[0].opcua.identity.cert": f"file not found: {nope}/user.der",
        "connectors[0].opcua.identity.key": f"file not found: {nope}/user.pem",
        "connectors[1].mqtt.tls.ca_file": f"file not found: {nope}/ca.pem",
        "connectors[1].mqtt.tls.cert_file": f"file not found: {nope}/agent.crt",
        "connectors[1].mqtt.tls.key_file": f"not a file: {tmp_path} is a folder",
        "uplink.http.verify": f"file not found: {nope}/bundle.pem",
        "uplink.http.client_cert": f"file not found: {nope}/c.crt",
        "uplink.http.client_key": f"file not found: {nope}/c.key",
    }
    assert main(["check-config", "--config", str(path)]) == 2
    assert f"connectors[1].mqtt.tls.ca_file: file not found: {nope}/ca.pem" in capsys.readouterr().err
    assert main(["--config", str(path)]) == 2
    assert f"uplink.http.verify: file not found: {nope}/bundle.pem" in capsys.readouterr().err


def test_existing_tls_and_security_files_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.certs import self_signed

    cert, key = self_signed(tmp_path)
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    path = _agent_toml(
        tmp_path,
        mqtt_tls=f'ca_file = "{cert}"\ncert_file = "{cert}"\nkey_file = "{key}"',
        http_tls=f'verify = "{trusted}"\nclient_cert = "{cert}"\nclient_key = "{key}"',
        opcua_security=f'mode = "Sign"\npolicy = "Basic256Sha256"\ntrust_dir = "{trusted}"\n'
                       f'client_cert = "{tmp_path}/new-cert.der"\nclient_key = "{tmp_path}/new-key.pem"',
        identity=f'type = "certificate"\ncert = "{cert}"\nkey = "{key}"',
    )
    assert main(["check-config", "--config", str(path)]) == 0, capsys.readouterr().err
    assert "OK" in capsys.readouterr().out
    assert not (tmp_path / "new-cert.der").exists(), "checking creates nothing"


def test_opcua_client_cert_in_a_missing_folder_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nope = tmp_path / "nope"
    path = _agent_toml(
        tmp_path, mqtt_tls="", http_tls="",
        opcua_security=f'mode = "SignAndEncrypt"\npolicy = "Basic256Sha256"\n'
                       f'server_cert_fingerprints = ["{"AB:" * 31}AB"]\n'
                       f'client_cert = "{nope}/opcua-cert.der"\nclient_key = "{tmp_path}/opcua-key.pem"',
    )
    for argv in (["check-config", "--config", str(path)], ["certs", "--config", str(path)],
                 ["--config", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"connectors[0].opcua.security.client_cert: folder not found: {nope} " in err, err
        assert "client_key" not in err, "its folder exists: the key may be generated there"
    assert not nope.exists() and not (tmp_path / "opcua-key.pem").exists()


def test_a_generated_client_certificate_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _agent_toml(
        tmp_path, mqtt_tls="", http_tls="",
        opcua_security=f'mode = "SignAndEncrypt"\npolicy = "Basic256Sha256"\n'
                       f'server_cert_fingerprints = ["{"AB:" * 31}AB"]\n'
                       f'client_cert = "{tmp_path}/opcua-cert.der"\nclient_key = "{tmp_path}/opcua-key.pem"',
    )
    caplog.set_level("INFO", logger="edge_agent")
    assert main(["certs", "--config", str(path)]) == 0
    fp = capsys.readouterr().out.split("fingerprint:        ")[1].split()[0]
    generated = [r for r in caplog.records if "generated" in r.getMessage()]
    assert [r.levelname for r in generated] == ["INFO"]
    assert str(tmp_path / "opcua-cert.der") in generated[0].getMessage() and fp in generated[0].getMessage()
    caplog.clear()
    assert main(["certs", "--config", str(path)]) == 0
    assert not [r for r in caplog.records if "generated" in r.getMessage()], "reused: nothing to say"


async def test_a_tls_file_gone_after_validation_is_one_error_line_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The supervisor reports it as a SecurityError (one line, no traceback) and retries slowly."""
    import asyncio

    from edge_agent.buffer import SqliteBuffer
    from edge_agent.connectors.mqtt import MqttConnector
    from edge_agent.deadletter import DeadLetter
    from edge_agent.supervisor import supervise
    from tests.support.certs import self_signed
    from zhizao.backoff import Backoff

    ca, _ = self_signed(tmp_path)
    cfg, _ = load_agent_config(_agent_toml(tmp_path, mqtt_tls=f'ca_file = "{ca}"', http_tls=""))
    ca.unlink()
    conn = MqttConnector(cfg.connectors[1], "cell-1", DeadLetter(tmp_path / "dl.jsonl"))  # type: ignore[arg-type]
    async with SqliteBuffer(tmp_path / "b.sqlite", "cell-1") as buf:
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.01, cap=0.05),
                                             slow_retry_s=0.05))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(caplog.records) >= 2:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) >= 2 and not any(r.exc_info for r in errors), "no traceback"
    assert f"connector vendor-mqtt: tls.ca_file: file not found: {ca}" in errors[0].getMessage()


async def test_http_uplink_files_gone_after_validation_raise_security_errors(tmp_path: Path) -> None:
    from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
    from tests.support.certs import self_signed
    from zhizao.errors import SecurityError

    cert, key = self_signed(tmp_path)
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    cfg = HttpUplinkConfig(url="https://127.0.0.1:1", verify=cert, client_cert=cert, client_key=key,
                           token_file=token)
    async with HttpUplink(cfg):
        pass
    token.unlink()
    with pytest.raises(SecurityError, match=f"cannot read token_file {token}: No such file"):
        await HttpUplink(cfg).__aenter__()
    token.write_text("t0k3n\n")
    key.write_text("not a key")
    with pytest.raises(SecurityError, match=f"client certificate client_cert = {cert}, client_key = {key}"):
        await HttpUplink(cfg).__aenter__()
    cert.unlink()
    with pytest.raises(SecurityError, match=f"cannot load the CA bundle verify = {cert}: No such file"):
        await HttpUplink(cfg).__aenter__()


def test_agent_run_with_an_unreadable_token_file_fails_on_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "agent.token"
    path = _agent_toml(tmp_path, mqtt_tls="", http_tls=f'token_file = "{token}"')
    # missing: a config error naming the key, like a TLS file (check-config and the run, exit 2)
    for argv in (["check-config", "--config", str(path)], ["--config", str(path)]):
        assert main(argv) == 2
        assert f"uplink.http.token_file: file not found: {token}" in capsys.readouterr().err
    # there but unusable when the uplink starts: one error line naming it (exit 1)
    token.write_bytes(b"\xff\xfe not text")
    assert main(["--config", str(path)]) == 1
    failed = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failed) == 1 and f"token_file {token}" in failed[0].getMessage()


async def test_http_uplink_presents_its_client_certificate_with_a_ca_bundle_path(tmp_path: Path) -> None:
    """Mutual TLS with ``verify = <CA bundle>``: httpx 0.28 given ``verify=<str>`` ignores ``cert``,
    so the uplink builds the context itself. A server requiring a client certificate accepts it."""
    import asyncio
    import socket
    import ssl
    import threading

    from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
    from tests.edge_agent.test_buffer import samples
    from tests.support.certs import self_signed
    from zhizao.model import Batch

    (tmp_path / "srv").mkdir()
    (tmp_path / "cli").mkdir()
    server_cert, server_key = self_signed(tmp_path / "srv")
    client_cert, client_key = self_signed(tmp_path / "cli", "client")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_cert))
    ctx.load_cert_chain(server_cert, server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    peers: list[object] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                peers.append(tls.getpeercert())
                data = b""
                while b"\r\n\r\n" not in data:
                    data += tls.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                                  if line.startswith(b"content-length:")))
                while len(body) < length:  # all of it, or closing resets the connection
                    body += tls.recv(65536)
                answer = (b'{"producer":"cell-1","batch_id":"b-1","seq":1,"accepted":2,"rejected":[],'
                          b'"duplicate":false}')  # ingest's BatchResult: anything else is no delivery
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                            + str(len(answer)).encode() + b"\r\nConnection: close\r\n\r\n" + answer)
        except ssl.SSLError as exc:
            peers.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    cfg = HttpUplinkConfig(url=f"https://127.0.0.1:{listener.getsockname()[1]}", verify=server_cert,
                           client_cert=client_cert, client_key=client_key, gzip=False, timeout_s=5)
    try:
        async with HttpUplink(cfg) as up:
            await up.send(Batch("cell-1", "b-1", 1, tuple(samples(2))))
    finally:
        await asyncio.to_thread(thread.join, 5)
        listener.close()
    assert len(peers) == 1 and isinstance(peers[0], dict), peers


# -- folders the agent writes in: checked with the config, never created ------------------------
def _paths_toml(tmp_path: Path, agent: str, tables: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[agent]
id = "cell-1"
{agent}
{tables}
[health]
enabled = false
[[connectors]]
type = "opcua"
endpoint = "opc.tcp://127.0.0.1:1/x"
browse = [{{ pattern = "Objects/*" }}]
[uplink]
type = "http"
url = "http://127.0.0.1:1"
""")
    return path


def test_state_buffer_and_deadletter_in_missing_folders_are_config_errors_not_new_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo (/vra/lib/zhizao) is exit 2 naming the key — check-config, certs and the run — with
    the wording of the OPC UA client_cert check; nothing is created."""
    vra = tmp_path / "vra"
    path = _paths_toml(
        tmp_path, f'state_dir = "{vra}/lib/zhizao"',
        f'[buffer]\npath = "{vra}/buf/buffer.db"\n[deadletter]\npath = "{vra}/dl/deadletter.jsonl"',
    )
    expected = [
        f"agent.state_dir: folder not found: {vra}/lib/zhizao",
        f"buffer.path: folder not found: {vra}/buf (folders are not created: check the path)",
        f"deadletter.path: folder not found: {vra}/dl (folders are not created: check the path)",
    ]
    for argv in (["check-config", "--config", str(path)], ["certs", "--config", str(path)],
                 ["--config", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        for line in expected:
            assert line in err, err
    assert not vra.exists(), "no folder created"
    with pytest.raises(ConfigError) as info:
        load_agent_config(path, on_this_host=True)
    assert [k for k, _ in info.value.problems] == ["agent.state_dir", "buffer.path", "deadletter.path"]

    # the default buffer and dead-letter file go in state_dir: only it is named
    path = _paths_toml(tmp_path, f'state_dir = "{vra}/lib/zhizao"')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"agent.state_dir: folder not found: {vra}/lib/zhizao" in err and "buffer.path" not in err
    # a file where a folder is meant
    (tmp_path / "afile").write_text("")
    afile = _paths_toml(tmp_path, f'state_dir = "{tmp_path}/afile"')
    assert main(["check-config", "--config", str(afile)]) == 2
    assert f"agent.state_dir: not a folder: {tmp_path}/afile is a file" in capsys.readouterr().err


def test_default_state_dir_is_where_every_release_kept_it_and_existing_folders_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default stays ``/var/lib/zhizao``: an upgraded agent whose config relied on it finds its
    unsent backlog there (a working-directory default stranded 1,000 samples in the upgrade review)."""
    monkeypatch.chdir(tmp_path)
    path = _paths_toml(tmp_path, "")
    cfg, _ = load_agent_config(path)
    assert cfg.agent.state_dir == Path("/var/lib/zhizao")
    assert cfg.buffer.path == Path("/var/lib/zhizao/buffer.sqlite")
    assert cfg.deadletter.path == Path("/var/lib/zhizao/deadletter.jsonl")
    if not Path("/var/lib/zhizao").exists():  # on a box without it: a config error naming the key
        with pytest.raises(ConfigError, match="folder not found: /var/lib/zhizao"):
            load_agent_config(path, on_this_host=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.toml"], "nothing created"
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    path = _paths_toml(tmp_path, f'state_dir = "{tmp_path}"',
                       f'[buffer]\npath = "{tmp_path}/b/x.db"\n[deadletter]\npath = "{tmp_path}/d/x.jsonl"')
    assert main(["check-config", "--config", str(path)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.toml", "b", "d"], "checking creates nothing"
    # validating a config meant for another machine (a container's) checks no path here
    elsewhere = _paths_toml(tmp_path, 'state_dir = "/nonexistent/zhizao"')
    assert load_agent_config(elsewhere)[0].agent.state_dir == Path("/nonexistent/zhizao")


def test_folders_and_files_this_user_cannot_write_or_read_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The permission bits decide (as root, the test asks as a user without root's bypass would)."""
    import os
    import stat

    if os.geteuid() == 0:
        def as_a_user(p: Path, mode: int) -> bool:
            bits = os.stat(p).st_mode
            return all(not mode & m or bits & b for m, b in
                       ((os.R_OK, stat.S_IRUSR), (os.W_OK, stat.S_IWUSR), (os.X_OK, stat.S_IXUSR)))

        monkeypatch.setattr("edge_agent.config_paths._may", as_a_user)
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "buffer.db").write_text("")
    token = tmp_path / "agent.token"
    token.write_text("t0k3n\n")
    path = _paths_toml(
        tmp_path, f'state_dir = "{ro}"',
        f'[buffer]\npath = "{ro}/buffer.db"\n[deadletter]\npath = "{ro}/new.jsonl"',
    )
    path.write_text(path.read_text() + f'token_file = "{token}"\n')
    ro.chmod(0o555)
    (ro / "buffer.db").chmod(0o444)
    token.chmod(0o000)
    try:
        assert main(["check-config", "--config", str(path)]) == 2
        err = capsys.readouterr().err
    finally:
        ro.chmod(0o755)
        token.chmod(0o600)
    assert f"agent.state_dir: folder not writable: {ro} (by " in err, err
    assert f"buffer.path: file not writable: {ro}/buffer.db (by " in err
    assert f"deadletter.path: folder not writable: {ro} (by " in err
    assert f"uplink.http.token_file: file not readable: {token} (by " in err


def test_token_file_is_checked_with_the_config_like_the_tls_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    token = tmp_path / "etc" / "agent.token"
    path = _paths_toml(tmp_path, f'state_dir = "{state}"')
    path.write_text(path.read_text() + f'token_file = "{token}"\n')
    for argv in (["check-config", "--config", str(path)], ["--config", str(path)]):
        assert main(argv) == 2
        assert f"uplink.http.token_file: file not found: {token}" in capsys.readouterr().err
    token.parent.mkdir()
    token.mkdir()
    assert main(["check-config", "--config", str(path)]) == 2
    assert f"uplink.http.token_file: not a file: {token} is a folder" in capsys.readouterr().err
    token.rmdir()
    token.write_text("t0k3n\n")
    assert main(["check-config", "--config", str(path)]) == 0, capsys.readouterr().err
