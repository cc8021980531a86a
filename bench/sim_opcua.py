"""Benchmark: value changes per second one simulator process serves over OPC UA to a subscribed client.

Run: ``python -m bench.sim_opcua [--quick | --smoke] [--scenario examples/workshop.toml]``.

Two phases in the same run, each a separate server process and the same asyncua client in this
process (subscribed to every variable, queue size 1000, publishing interval 100 ms, counting every
data-change notification):

1. raw ceiling — a bare asyncua server with as many Double variables as the simulator serves,
   values written in a tight loop straight into its address space;
2. the simulator — ``zhizao sim`` on the scenario, by default at the speed at which it writes about
   1.5x the 5,000/s target (``--speed max`` overproduces: the server then discards queued changes).

Prints both rates, the simulator's ratio to the ceiling, and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import add_smoke_flag, sized

ROOT = Path(__file__).resolve().parents[1]
TARGET = 5000.0


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.n += 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stats:
    def __init__(self) -> None:
        self.rate = 0.0
        self.count = 0
        self.server_cpu = 0.0
        self.client_cpu = 0.0


async def _measure(
    endpoint: str, node_ids: list[str] | None, ns_uri: str, warmup: float, seconds: float, server_pid: int
) -> Stats:
    """Subscribe to ``node_ids`` (or every variable under Objects in ``ns_uri``) and count
    notifications per second over ``seconds`` after ``warmup``; also the CPU share (cores) the
    server process and this client used meanwhile."""
    from asyncua.client.client import Client

    async with Client(endpoint, timeout=30) as client:
        if node_ids is None:
            idx = await client.get_namespace_index(ns_uri)
            node_ids = [f"ns={idx};s=v{i}" for i in range(int(os.environ["BENCH_RAW_VARS"]))]
        nodes = [client.get_node(n) for n in node_ids]
        counter = _Counter()
        sub: Any = await client.create_subscription(100, counter)
        for i in range(0, len(nodes), 500):
            await sub.subscribe_data_change(nodes[i : i + 500], queuesize=1000, sampling_interval=0.0)
        await asyncio.sleep(warmup)
        start_n, t0 = counter.n, time.perf_counter()
        s0, c0 = _cpu_s(server_pid), time.process_time()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - t0
        stats = Stats()
        stats.count = counter.n - start_n
        stats.rate = stats.count / elapsed
        stats.server_cpu = (_cpu_s(server_pid) - s0) / elapsed
        stats.client_cpu = (time.process_time() - c0) / elapsed
        await sub.delete()
        return stats


def _wait_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            continue
        if needle in line:
            return line
    raise TimeoutError(f"no {needle!r} from the server")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the raw server (run in a child process) ------------------------------------------------------
async def _raw_server(port: int, n_vars: int) -> None:
    import importlib

    from asyncua.server.server import Server

    ua: Any = importlib.import_module("asyncua.ua")
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/raw")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:zhizao:bench:raw")
    folder = await server.nodes.objects.add_folder(ua.NodeId("raw", idx), ua.QualifiedName("raw", idx))
    nids = []
    for i in range(n_vars):
        nid = ua.NodeId(f"v{i}", idx)
        await folder.add_variable(nid, ua.QualifiedName(f"v{i}", idx), ua.Variant(0.0, ua.VariantType.Double))
        nids.append(nid)
    async with server:
        print("ready", flush=True)
        aspace = server.iserver.aspace
        attr = ua.AttributeIds.Value
        k = 0
        while True:
            from datetime import UTC, datetime

            now = datetime.now(UTC)
            for nid in nids:
                k += 1
                dv = ua.DataValue(Value=ua.Variant(float(k), ua.VariantType.Double), SourceTimestamp=now)
                await aspace.write_attribute_value(nid, attr, dv)
            await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sim_opcua", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short measurement (< 1 minute)")
    add_smoke_flag(p)
    p.add_argument("--scenario", default=str(ROOT / "examples" / "workshop.toml"))
    p.add_argument(
        "--speed",
        default="auto",
        help="simulator speed: a number, 'max', or 'auto' (default: the speed at which it writes about "
        "1.5x the target per second; at 'max' it overproduces and the server drops queued changes)",
    )
    p.add_argument("--raw-server", type=int, help=argparse.SUPPRESS)
    p.add_argument("--variables", type=int, default=100, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.raw_server:
        asyncio.run(_raw_server(args.raw_server, args.variables))
        return 0
    warmup, seconds = sized(args, full=(5.0, 30.0), quick=(2.0, 8.0), smoke=(0.5, 1.0))

    from simulator import load_scenario
    from simulator.engine import signal_units

    scenario = load_scenario(args.scenario)
    units = signal_units(scenario)
    names = [f"{a}/{s}" for k, (a, m) in enumerate(scenario.machines()) if m.mqtt is None for s in units[k]]
    n_vars = len(names)
    speed = args.speed
    if speed == "auto":
        from simulator.engine import Simulation

        sim_run = Simulation(scenario, 7, 600.0)
        opc = [k for k, (_, m) in enumerate(scenario.machines()) if m.mqtt is None]
        per_tick = sum(len(t.emissions[k]) for t in sim_run.ticks() for k in opc) / sim_run.n_ticks
        speed = str(max(1, round(1.5 * TARGET / (per_tick / scenario.tick_s))))

    # 1. raw ceiling
    port = _free_port()
    raw = subprocess.Popen(
        [sys.executable, "-m", "bench.sim_opcua", "--raw-server", str(port), "--variables", str(n_vars)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_line(raw, "ready")
        os.environ["BENCH_RAW_VARS"] = str(n_vars)
        raw_stats = asyncio.run(
            _measure(
                f"opc.tcp://127.0.0.1:{port}/raw", None, "urn:zhizao:bench:raw", warmup, seconds, raw.pid
            )
        )
    finally:
        _stop(raw)
    raw_rate = raw_stats.rate
    print(
        f"raw asyncua server, {n_vars} variables written in a tight loop: {raw_rate:,.0f} value changes/s "
        f"(server {raw_stats.server_cpu:.2f} cores, client {raw_stats.client_cpu:.2f} cores)"
    )

    # 2. the simulator
    port = _free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zhizao.cli",
            "sim",
            "--scenario",
            args.scenario,
            "--speed",
            speed,
            "--duration",
            str(30 * 86400),
            "--opcua-port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_line(sim, "OPC UA endpoint")
        endpoint = f"opc.tcp://127.0.0.1:{port}/zhizao/sim"
        ids = [f"ns=2;s={n}" for n in names]
        sim_stats = asyncio.run(_measure(endpoint, ids, "urn:zhizao:simulator", warmup, seconds, sim.pid))
    finally:
        _stop(sim)
    sim_rate = sim_stats.rate
    ratio = sim_rate / raw_rate if raw_rate else 0.0
    print(
        f"simulator ({scenario.name}, {n_vars} variables, --speed {speed}): {sim_rate:,.0f} value changes/s "
        f"(server {sim_stats.server_cpu:.2f} cores, client {sim_stats.client_cpu:.2f} cores)"
    )
    if sim_stats.server_cpu:
        print(
            f"per CPU-second of the simulator process: {sim_rate / sim_stats.server_cpu:,.0f} value changes"
        )
    load = os.getloadavg()[0]
    print(f"load average during the run: {load:.2f} on {os.cpu_count()} cores (other work competes for CPU)")
    print(f"ratio to the raw ceiling: {ratio:.2f}; target {TARGET:,.0f}/s")
    print(
        json.dumps(
            {
                "bench": "sim_opcua",
                "quick": args.quick,
                "smoke": args.smoke,
                "variables": n_vars,
                "speed": speed,
                "value_changes_per_s": round(sim_rate, 1),
                "value_changes": sim_stats.count,
                "raw_value_changes": raw_stats.count,
                "raw_value_changes_per_s": round(raw_rate, 1),
                "raw_ratio": round(ratio, 3),
                "sim_server_cores": round(sim_stats.server_cpu, 2),
                "value_changes_per_server_cpu_s": round(sim_rate / sim_stats.server_cpu)
                if sim_stats.server_cpu
                else None,
                "raw_value_changes_per_server_cpu_s": round(raw_rate / raw_stats.server_cpu)
                if raw_stats.server_cpu
                else None,
                "raw_server_cores": round(raw_stats.server_cpu, 2),
                "load_average": round(load, 2),
                "target_value_changes_per_s": TARGET,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
