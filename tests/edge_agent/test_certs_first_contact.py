"""Trust on first use with ``zhizao agent certs``, against the simulator's real asyncua server with
Basic256Sha256 SignAndEncrypt: the server's certificate (fingerprint, subject, validity) is shown
before anything is pinned — from a config whose secure connector has no pin yet, or from the
endpoint alone — and the fingerprint it prints, once pinned, is the one the agent connects with."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from edge_agent.buffer import SqliteBuffer
from edge_agent.cli import main
from edge_agent.config import load_agent_config
from edge_agent.connectors.opcua import OpcUaConnector, OpcUaConnectorConfig
from edge_agent.connectors.opcua.security import fingerprint, load_der
from simulator.opcua.security import OpcUaSecurity, ensure_certificate
from simulator.opcua.server import OpcUaServer
from tests.edge_agent.test_opcua_connector import machines
from tests.support.ports import free_port
from tests.support.waiting import eventually


class ServerThread:
    """The simulator's OPC UA server (SignAndEncrypt only) on its own loop in a thread — the CLI
    under test runs ``asyncio.run`` itself. It keeps its certificate in ``sec.cert_dir`` across
    restarts and reads the trusted client certificates at start."""

    def __init__(self, sec: OpcUaSecurity) -> None:
        self.sec = sec
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/zhizao/sim"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready, failed = threading.Event(), []

        async def serve() -> None:
            async with OpcUaServer(machines(), port=self.port, security=self.sec):
                ready.set()
                await asyncio.to_thread(self._stop.wait)

        def run() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # reported by start()
                failed.append(exc)
                ready.set()

        self._stop.clear()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(30) and not failed, failed

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None


@pytest.fixture
def secure_server(tmp_path: Path) -> Iterator[ServerThread]:
    sec = OpcUaSecurity(tmp_path / "server-pki", tmp_path / "server-trust")
    sec.trust_dir.mkdir(parents=True)
    other = tmp_path / "other-client"  # the server trusts some client, not (yet) this agent
    asyncio.run(ensure_certificate(other / "key.pem", other / "cert.der", app_uri="urn:other", client=True))
    shutil.copy(other / "cert.der", sec.trust_dir / "other.der")
    server = ServerThread(sec)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _config(tmp_path: Path, endpoint: str, pin: str = "") -> Path:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[agent]
id = "cell-1"
state_dir = "{state}"
[health]
enabled = false
[[connectors]]
type = "opcua"
name = "press"
endpoint = "{endpoint}"
request_timeout_s = 5
browse = [{{ pattern = "Objects/plant1/*/line1/*/*" }}]
[connectors.security]
mode = "SignAndEncrypt"
policy = "Basic256Sha256"
{f'server_cert_fingerprints = ["{pin}"]' if pin else ""}
[uplink]
type = "http"
url = "http://127.0.0.1:1"
""")
    return path


def test_the_server_certificate_is_shown_before_anything_is_pinned(
    tmp_path: Path, secure_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, sec = secure_server.endpoint, secure_server.sec
    der = load_der(sec.cert_path)
    fp = fingerprint(der)
    cert = x509.load_der_x509_certificate(der)
    path = _config(tmp_path, endpoint)

    # the run and check-config still refuse a secure connector that trusts nothing, and say how to fix it
    assert main(["check-config", "--config", str(path)]) == 2
    assert "--server' shows its certificate to pin" in capsys.readouterr().err

    # first contact from the config: no pin needed
    assert main(["certs", "--config", str(path), "--server"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"server certificate: sha256:{fp} (not pinned)" in out, out
    assert f"subject:   {cert.subject.rfc4514_string()}" in out and "urn:zhizao:simulator:server" in out
    iso = "%Y-%m-%dT%H:%M:%SZ"
    valid = f"valid:     {cert.not_valid_before_utc:{iso}} to {cert.not_valid_after_utc:{iso}}"
    assert valid in out
    assert "endpoints: Basic256Sha256/SignAndEncrypt" in out
    assert f'server_cert_fingerprints = ["sha256:{fp}"]' in out
    client_cert = tmp_path / "state" / "pki" / "press-cert.der"
    assert client_cert.exists(), "the client certificate is created on the same first contact"

    # first contact from the endpoint alone, no config at all
    assert main(["certs", "--server", endpoint]) == 0
    alone = capsys.readouterr().out
    assert f"server certificate: sha256:{fp} (not pinned)" in alone and valid in alone
    assert main(["certs", "--server", "http://nope"]) == 2
    assert main(["certs"]) == 2

    # pin exactly what was printed: the config is now valid, shown as pinned, and the agent connects
    pin = re.search(r'server_cert_fingerprints = \["(sha256:[0-9A-F:]+)"\]', out)
    assert pin is not None
    pinned = _config(tmp_path, endpoint, pin.group(1))
    assert main(["check-config", "--config", str(pinned)]) == 0
    assert main(["certs", "--config", str(pinned), "--server"]) == 0
    assert f"server certificate: sha256:{fp} (pinned)" in capsys.readouterr().out
    secure_server.stop()  # the administrator trusts the agent, and restarts the server
    shutil.copy(client_cert, sec.trust_dir / "agent.der")
    secure_server.start()
    cfg, _ = load_agent_config(pinned, on_this_host=True)
    opc = cfg.connectors[0]
    assert isinstance(opc, OpcUaConnectorConfig)

    async def connect() -> None:
        conn = OpcUaConnector(opc, cfg.agent.id, cfg.agent.state_dir)
        async with SqliteBuffer(tmp_path / "b.sqlite", "cell-1", commit_interval=0.02) as buf:
            task = asyncio.create_task(conn.run(buf))
            try:
                await eventually(lambda: conn.stats.connected or task.done(), 20, "the agent connected")
                assert not task.done(), task.exception()
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

    asyncio.run(connect())


def test_an_unreachable_server_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/zhizao/sim"
    assert main(["certs", "--config", str(_config(tmp_path, endpoint)), "--server"]) == 1
    assert "server: unreachable (OPC UA server" in capsys.readouterr().out
    assert main(["certs", "--server", endpoint]) == 1
