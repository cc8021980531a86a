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
    assert cfg.buffer.path == Path("/var/lib/zhizao/buffer.sqlite")
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
    text = SAMPLE.read_text().replace('state_dir = "/var/lib/zhizao"', f'state_dir = "{tmp_path}"')
    cfg = tmp_path / "agent.toml"
    cfg.write_text(text)
    assert main(["certs", "--config", str(cfg)]) == 0
    first = capsys.readouterr().out
    assert "fingerprint:        sha256:" in first and "urn:zhizao:agent:cell-1" in first
    assert main(["certs", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out == first, "the same certificate on every run"
    assert (tmp_path / "pki" / "sim-opcua-cert.der").exists()
