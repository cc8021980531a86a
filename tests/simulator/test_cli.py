"""``zhizao sim`` as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from simulator.ledger import read_ledger
from tests.support.ports import free_port
from tests.support.servers import Mosquitto
from zhizao.config import load_config
from zhizao.plant import PlantConfig

ROOT = Path(__file__).resolve().parents[2]


def _zhizao(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zhizao.cli", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sim_runs_the_workshop_and_prints_endpoint_and_topics(tmp_path: Path, mosquitto: Mosquitto) -> None:
    port = free_port()
    ledger = tmp_path / "ledger.jsonl"
    r = _zhizao(
        "sim",
        "--scenario",
        "examples/workshop.toml",
        "--seed",
        "7",
        "--speed",
        "60",
        "--duration",
        "600",
        "--opcua-port",
        str(port),
        "--mqtt-host",
        mosquitto.host,
        "--mqtt-port",
        str(mosquitto.port),
        "--ledger",
        str(ledger),
    )
    assert r.returncode == 0, r.stderr
    assert f"OPC UA endpoint: opc.tcp://127.0.0.1:{port}/zhizao/sim" in r.stdout
    assert "acme/line2/imm-3/telemetry" in r.stdout
    assert "brightline/plant1/pack-1/data" in r.stdout
    assert f"MQTT: mqtt://{mosquitto.host}:{mosquitto.port}" in r.stdout
    assert "done: 600 ticks" in r.stdout and "(0 dropped)" in r.stdout
    records = read_ledger(ledger)
    assert records[0]["type"] == "run" and records[0]["seed"] == 7
    # the faults that start within the 600 simulated seconds
    assert {r["kind"] for r in records if r["type"] == "fault"} == {"air_leak", "sensor_dropout"}
    assert [r["shift"] for r in records if r["type"] == "line_shift"] == ["2026-11-23/early"] * 2


def test_sim_without_broker_says_mqtt_is_off() -> None:
    r = _zhizao(
        "sim",
        "--scenario",
        "examples/compact.yaml",
        "--speed",
        "max",
        "--duration",
        "60",
        "--opcua-port",
        "0",
    )
    assert r.returncode == 0, r.stderr
    assert "MQTT: off" in r.stdout
    assert re.search(r"OPC UA endpoint: opc\.tcp://127\.0\.0\.1:[1-9][0-9]*/zhizao/sim", r.stdout)


def test_bad_scenario_is_a_usage_error_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    text = (ROOT / "examples" / "workshop.toml").read_text().replace('kind = "cnc"', 'kind = "lathe"', 1)
    bad.write_text(text)
    r = _zhizao("sim", "--scenario", str(bad), "--duration", "10", "--opcua-port", str(free_port()))
    assert r.returncode == 2
    assert "lines[0].machines[0].kind" in r.stderr and "lathe" in r.stderr


def test_export_plant_writes_a_valid_plant_config(tmp_path: Path) -> None:
    out = tmp_path / "plant.toml"
    r = _zhizao("sim", "export-plant", "--scenario", "examples/workshop.toml", "--out", str(out))
    assert r.returncode == 0, r.stderr
    plant = load_config(PlantConfig, out)
    assert len(plant.machines) == 9
    cnc = plant.machine("plant1/a1/line1/cnc-1")
    assert cnc is not None and cnc.ideal_cycle_time_s == {"housing-a": 95.0, "housing-b": 120.0}
    assert plant.calendar.timezone == "Asia/Shanghai"


def test_generate_offline_writes_the_same_ledger_as_a_live_run(tmp_path: Path) -> None:
    offline = tmp_path / "offline.jsonl"
    live = tmp_path / "live.jsonl"
    r = _zhizao(
        "sim",
        "generate",
        "--scenario",
        "examples/compact.yaml",
        "--seed",
        "3",
        "--duration",
        "900",
        "--ledger",
        str(offline),
    )
    assert r.returncode == 0, r.stderr
    r = _zhizao(
        "sim",
        "--scenario",
        "examples/compact.yaml",
        "--seed",
        "3",
        "--speed",
        "max",
        "--duration",
        "900",
        "--opcua-port",
        str(free_port()),
        "--ledger",
        str(live),
    )
    assert r.returncode == 0, r.stderr
    assert offline.read_bytes() == live.read_bytes()
