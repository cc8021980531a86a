"""Review h71, the agent's own side: per-connector staleness of ``/healthz``, metrics per connector
kind and every exported metric documented, ``${NAME}`` in the config, an empty token file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.cli import main
from edge_agent.config import load_agent_config
from tests.edge_agent.test_e2e import http_get
from tests.support.ports import free_port
from tests.support.waiting import eventually
from zhizao.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "edge_agent" / "sample-agent.toml"

TWO_MQTT = """
[agent]
id = "h-agent"
state_dir = "{state}"
[health]
port = 0
interval_s = 0.2
stale_intervals = 1
{extra}
[[connectors]]
type = "mqtt"
name = "loud"
host = "127.0.0.1"
port = {port}
mappings = [{{ name = "m", topic = "a/+m", asset = "p/a/l/{{m}}", values = {{ layout = "object" }} }}]
[[connectors]]
type = "mqtt"
name = "quiet"
host = "127.0.0.1"
port = {port}
mappings = [{{ name = "m", topic = "b/+m", asset = "p/a/l/{{m}}", values = {{ layout = "object" }} }}]
[uplink]
type = "http"
url = "http://127.0.0.1:{port}"
"""


def two_mqtt(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(TWO_MQTT.format(state=tmp_path, port=free_port(), extra=extra))
    return path


async def test_a_connector_can_have_its_own_staleness_window_or_none(tmp_path: Path) -> None:
    """h71 #4: a source that publishes only on change made the agent unhealthy after 30 s."""
    cfg, digest = load_agent_config(two_mqtt(tmp_path, "connector_stale_after_s = { quiet = 0 }"))
    assert cfg.health.connector_stale_after_s == {"quiet": 0.0}
    agent = Agent(cfg, digest)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await eventually(lambda: agent.health_port is not None, 10, "the health port")
        await asyncio.sleep(0.6)  # three windows without data on both connectors
        status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{agent.health_port}/healthz")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    problems = json.loads(body)["problems"]
    assert status == 503
    assert any("connector loud" in p for p in problems), problems
    assert not any("connector quiet" in p for p in problems), problems


def test_a_longer_window_and_an_unknown_connector_name(tmp_path: Path) -> None:
    cfg, _ = load_agent_config(two_mqtt(tmp_path, "connector_stale_after_s = { quiet = 900, loud = 5 }"))
    assert cfg.health.connector_stale_after_s == {"quiet": 900.0, "loud": 5.0}
    with pytest.raises(ConfigError) as info:
        load_agent_config(two_mqtt(tmp_path, "connector_stale_after_s = { qiuet = 0 }"))
    assert "health.connector_stale_after_s" in str(info.value) and "'qiuet'" in str(info.value)
    with pytest.raises(ConfigError, match="connector_stale_after_s"):
        load_agent_config(two_mqtt(tmp_path, "connector_stale_after_s = { quiet = -1 }"))


def sample_agent(tmp_path: Path) -> Agent:
    text = SAMPLE.read_text().replace('state_dir = "."', f'state_dir = "{tmp_path}"')
    path = tmp_path / "agent.toml"
    path.write_text(text)
    cfg, digest = load_agent_config(path)
    return Agent(cfg, digest)


def test_connector_families_are_exported_for_their_kind_only(tmp_path: Path) -> None:
    """h71 #5: ``mqtt_messages_total{connector="sim-opcua"}`` was exported."""
    text = sample_agent(tmp_path).metrics.render().decode()
    kinds = {"sim-opcua": "opcua", "vendor-mqtt": "mqtt"}
    only = {"mqtt_messages_total": "mqtt", "mqtt_duplicates_skipped_total": "mqtt",
            "bad_payloads_total": "mqtt", "resubscribes_total": "opcua", "skipped_nodes": "opcua",
            "values_skipped_total": "opcua"}
    for family, kind in only.items():
        for name, k in kinds.items():
            present = f'zhizao_agent_{family}{{connector="{name}"' in text
            assert present == (k == kind), (family, name)
    for name in kinds:  # the common ones for both
        assert f'zhizao_agent_samples_read_total{{connector="{name}"}}' in text
        assert f'zhizao_agent_connector_up{{connector="{name}"}}' in text


def test_every_exported_metric_is_in_the_readme_table(tmp_path: Path) -> None:
    text = sample_agent(tmp_path).metrics.render().decode()
    names = {m for m in re.findall(r"^# TYPE (\S+) ", text, re.M) if not m.endswith("_created")}
    assert len(names) >= 30
    readme = (ROOT / "edge_agent" / "README.md").read_text()
    rows = set(re.findall(r"^\s*\| `(zhizao_agent_\w+)` \|", readme, re.M))
    assert not names - rows, sorted(names - rows)
    assert not rows - names, sorted(rows - names)  # and nothing documented that is not exported


# ---- ${NAME} in the config ------------------------------------------------------------------------


def test_environment_references_are_expanded_in_string_values_only() -> None:
    from edge_agent.config import expand_env

    doc = {"uplink": {"token": "${T}", "url": "https://${HOST}:8443", "n": 3},
           "connectors": [{"password": "a$${b}c", "name": "x"}], "${K}": "v"}
    out, problems = expand_env(doc, {"T": "s3cret", "HOST": "ingest.example", "K": "no"})
    assert problems == []
    assert out == {"uplink": {"token": "s3cret", "url": "https://ingest.example:8443", "n": 3},
                   "connectors": [{"password": "a${b}c", "name": "x"}], "${K}": "v"}
    _, problems = expand_env({"uplink": {"token": "${MISSING}"}, "c": [{"p": "${1x}"}, {"q": "${open"}]}, {})
    assert [k for k, _ in problems] == ["uplink.token", "c[0].p", "c[1].q"]
    assert "environment variable MISSING is not set" in problems[0][1]


def write_sample_with(tmp_path: Path, token: str) -> Path:
    text = SAMPLE.read_text().replace('state_dir = "."', f'state_dir = "{tmp_path}"')
    text = text.replace('# token_file = "/etc/zhizao/agent.token"', f"token = {token!r}".replace("'", '"'))
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zhizao", "agent", "check-config", "--config", str(path)],
                          check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_a_token_from_the_environment_and_a_missing_variable(tmp_path: Path) -> None:
    """h71 #6: the literal "${ZHIZAO_TOKEN}" was taken as the token; now it is the variable, and a
    variable that is not set is a config error naming the key and the variable (exit 2)."""
    path = write_sample_with(tmp_path, "${H77_TOKEN}")
    env = {k: v for k, v in os.environ.items() if k != "H77_TOKEN"}
    os.environ.pop("H77_TOKEN", None)
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    assert info.value.problems == [("uplink.token", "environment variable H77_TOKEN is not set "
                                                    "(referenced as ${H77_TOKEN})")]
    missing = check_config(path, {})
    assert missing.returncode == 2 and "uplink.token" in missing.stderr and "H77_TOKEN" in missing.stderr
    ok = check_config(path, {**env, "H77_TOKEN": "abc"})
    assert ok.returncode == 0, ok.stderr
    os.environ["H77_TOKEN"] = "abc"
    try:
        cfg, _ = load_agent_config(path)
    finally:
        del os.environ["H77_TOKEN"]
    assert cfg.uplink.type == "http" and cfg.uplink.bearer_token() == "abc"


def test_an_empty_token_file_is_a_config_error_saying_what_to_write(tmp_path: Path) -> None:
    token = tmp_path / "agent.token"
    token.write_text("\n")
    text = SAMPLE.read_text().replace('state_dir = "."', f'state_dir = "{tmp_path}"')
    path = tmp_path / "agent.toml"
    path.write_text(text.replace('# token_file = "/etc/zhizao/agent.token"', f'token_file = "{token}"'))
    assert main(["check-config", "--config", str(path)]) == 2
    with pytest.raises(ConfigError) as info:
        load_agent_config(path, on_this_host=True)
    ((key, msg),) = info.value.problems
    assert key == "uplink.http.token_file" and "is empty" in msg and "token create" in msg
    load_agent_config(path)  # for another machine: not read
    token.write_text("zt_secret\n")
    assert main(["check-config", "--config", str(path)]) == 0
