"""The OPC UA server, browsed and read by a real asyncua client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from simulator import load_scenario
from simulator.engine import signal_units
from simulator.opcua import NAMESPACE_URI, OpcUaSecurity, ensure_certificate
from simulator.runtime import SimulatorRuntime
from tests.support.ports import free_port
from zhizao.errors import SecurityError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def _children(node: Any) -> dict[str, Any]:
    return {(await c.read_browse_name()).Name: c for c in await node.get_children()}


async def _until_tick(sim: SimulatorRuntime, n: int) -> None:
    """Wait (at most 60 s) until the simulation has played ``n`` ticks."""
    for _ in range(1200):
        if sim.ticks_done >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the simulation did not reach tick {n}")


async def test_address_space_units_changing_values_and_bad_status_on_dropout(tmp_path: Path) -> None:
    sc = load_scenario(EXAMPLES / "compact.yaml")
    port = free_port()
    async with SimulatorRuntime(
        sc,
        seed=7,
        speed=20,
        opcua_port=port,
        duration_s=600,
        served_log=tmp_path / "served.jsonl",
        autostart=False,
    ) as sim:
        assert sim.endpoint == f"opc.tcp://127.0.0.1:{port}/zhizao/sim"
        async with Client(sim.endpoint, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            site = (await _children(client.nodes.objects))["plant1"]
            line = (await _children((await _children(site))["a1"]))["line1"]
            machines = await _children(line)
            units = signal_units(sc)
            expected = {a.machine: units[k] for k, (a, m) in enumerate(sc.machines()) if m.mqtt is None}
            assert set(machines) == set(expected)  # MQTT-native machines are on MQTT only
            for name, signals in expected.items():
                variables = await _children(machines[name])
                assert set(variables) == set(signals), name
                for signal, unit in signals.items():
                    var = variables[signal]
                    assert var.nodeid.to_string() == f"ns={idx};s=plant1/a1/line1/{name}/{signal}"
                    assert sim.node_ids[f"plant1/a1/line1/{name}/{signal}"] == var.nodeid.to_string()
                    props = await _children(var)
                    if unit is None:
                        assert "EngineeringUnits" not in props
                    else:
                        eu = await props["EngineeringUnits"].read_value()
                        assert eu.DisplayName.Text == unit
            power = client.get_node(sim.node_ids["plant1/a1/line1/cnc-1/power_kw"])
            state = client.get_node(sim.node_ids["plant1/a1/line1/cnc-1/state"])
            temp = client.get_node(sim.node_ids["plant1/a1/line1/cnc-1/spindle_temp"])
            parts = client.get_node(sim.node_ids["plant1/a1/line1/cnc-1/parts_total"])
            assert (await power.read_data_type_as_variant_type()) == ua.VariantType.Double
            assert (await parts.read_data_type_as_variant_type()) == ua.VariantType.Int64
            assert (await state.read_data_type_as_variant_type()) == ua.VariantType.String
            # the dropout of spindle_temp lasts simulated seconds 20..140
            sim.start()
            await _until_tick(sim, 40)
            first: Any = await power.read_data_value()
            dropped: Any = await temp.read_data_value(raise_on_bad_status=False)
            assert dropped.StatusCode.is_bad()
            await _until_tick(sim, 60)
            second: Any = await power.read_data_value()
            assert second.SourceTimestamp > first.SourceTimestamp
            assert second.Value.Value != first.Value.Value
            assert first.SourceTimestamp.year == 2026  # simulated time, not wall time
            assert await state.read_value() in ("running", "idle", "setup", "down", "off")
            await _until_tick(sim, 150)
            recovered: Any = await temp.read_data_value()
            assert recovered.StatusCode.is_good()
    assert (tmp_path / "served.jsonl").stat().st_size > 0


async def _secure_client(endpoint: str, uri: str, cert: Path, key: Path, server_cert: Path) -> Client:
    client = Client(endpoint, timeout=10)
    client.application_uri = uri
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(cert),
        str(key),
        server_certificate=str(server_cert),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return client


async def test_security_sign_and_encrypt_with_trusted_client_certificate(tmp_path: Path) -> None:
    sc = load_scenario(EXAMPLES / "compact.yaml")
    trust = tmp_path / "trusted"
    trust.mkdir()
    client_cert, client_key = tmp_path / "client" / "cert.der", tmp_path / "client" / "key.pem"
    uri = "urn:zhizao:test:client"
    await ensure_certificate(client_key, client_cert, app_uri=uri, client=True, host_name="localhost")
    other_cert, other_key = tmp_path / "other" / "cert.der", tmp_path / "other" / "key.pem"
    await ensure_certificate(other_key, other_cert, app_uri=uri, client=True, host_name="localhost")
    (trust / "client.der").write_bytes(client_cert.read_bytes())
    security = OpcUaSecurity(cert_dir=tmp_path / "server", trust_dir=trust)
    port = free_port()
    async with SimulatorRuntime(
        sc, seed=7, speed=10, opcua_port=port, duration_s=600, security=security
    ) as sim:
        assert sim.endpoint is not None
        server_cert = security.cert_path.read_bytes()
        # anonymous without encryption is refused
        plain = Client(sim.endpoint, timeout=5)
        with pytest.raises(Exception):  # noqa: B017 - asyncua raises several types here
            async with plain:
                await plain.nodes.objects.get_children()
        client = await _secure_client(sim.endpoint, uri, client_cert, client_key, security.cert_path)
        async with client:
            node = client.get_node(sim.node_ids["plant1/a1/line1/cnc-1/power_kw"])
            assert isinstance(await node.read_value(), float)
        # an untrusted client certificate is refused
        rogue = await _secure_client(sim.endpoint, uri, other_cert, other_key, security.cert_path)
        with pytest.raises(Exception):  # noqa: B017
            async with rogue:
                await rogue.nodes.objects.get_children()
    # the server certificate is persisted and reused on the next start
    async with SimulatorRuntime(
        sc, seed=7, speed=10, opcua_port=free_port(), duration_s=60, security=security
    ):
        assert security.cert_path.read_bytes() == server_cert


async def test_no_fake_initial_values_and_the_clock_waits_for_start() -> None:
    sc = load_scenario(EXAMPLES / "compact.yaml")
    async with SimulatorRuntime(
        sc, seed=7, speed=None, opcua_port=free_port(), duration_s=30, autostart=False, keep_served=True
    ) as sim:
        assert sim.endpoint is not None
        async with Client(sim.endpoint, timeout=10) as client:
            node = client.get_node(sim.node_ids["plant1/a1/line1/cnc-1/energy_kwh"])
            before: Any = await node.read_data_value(raise_on_bad_status=False)
            assert before.StatusCode.name == "BadWaitingForInitialData"
            await asyncio.sleep(0.3)
            assert sim.ticks_done == 0 and sim.served == []
            sim.start()
            await asyncio.wait_for(sim.wait(), 30)
            after: Any = await node.read_data_value()
            assert after.StatusCode.is_good() and isinstance(after.Value.Value, float)
    assert sim.ticks_done == 30
    assert sim.served[0].ts == sc.start


async def test_security_with_an_empty_trust_folder_is_a_clear_error(tmp_path: Path) -> None:
    sc = load_scenario(EXAMPLES / "compact.yaml")
    (tmp_path / "trusted").mkdir()
    security = OpcUaSecurity(cert_dir=tmp_path / "server", trust_dir=tmp_path / "trusted")
    with pytest.raises(SecurityError, match="trusted"):
        async with SimulatorRuntime(sc, opcua_port=0, duration_s=10, security=security):
            pass


async def test_halt_stops_the_clock_and_keeps_the_server_serving() -> None:
    """``halt()``: no tick after it, and clients still read what was served last."""
    sc = load_scenario(EXAMPLES / "compact.yaml")
    async with SimulatorRuntime(sc, seed=7, speed=20, opcua_port=free_port(), duration_s=600,
                                autostart=False, keep_served=True) as sim:
        assert sim.endpoint is not None
        await asyncio.sleep(0.3)
        assert sim.ticks_done == 0  # servers up, clock held until start()
        sim.start()
        await _until_tick(sim, 5)
        await sim.halt()
        halted_at = sim.ticks_done
        last = {f"{s.asset}/{s.signal}": s for s in sim.served if f"{s.asset}/{s.signal}" in sim.node_ids}
        key, served = sorted(last.items())[0]
        async with Client(sim.endpoint, timeout=10) as client:
            value = await client.get_node(sim.node_ids[key]).read_data_value()
            assert value.Value is not None and value.Value.Value == served.value, key
        await asyncio.sleep(0.5)
        assert sim.ticks_done == halted_at and sim.done
