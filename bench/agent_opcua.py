"""Benchmark: OPC UA collection by the edge agent vs a raw asyncua subscription, same server, same run.

    python -m bench.agent_opcua [--quick | --smoke] [--tags 2000] [--seconds 30]

One simulator OPC UA server process (``simulator.opcua.server.OpcUaServer``) serves ``--tags``
variables and rewrites them at ``--rate`` values/s (default 2,000: every tag once a second;
``--rate 0`` = as fast as the server can, where the server's own monitored-item queues drop
values and the figures measure the server more than the clients). Then two clients, each
in its own process, subscribe to every tag at the same time:

- **raw**: a bare asyncua client subscribes to every tag with the agent's monitoring parameters
  (batches of 500, sampling 0, queue 1000, trigger StatusValueTimestamp) and only counts the
  notifications: the ceiling;
- **agent**: the agent's OPC UA connector (browse pattern, batched subscribe) into the real
  durable SQLite buffer, drained by the forwarder to a null uplink: the agent's collection path.

Prints values/s of both and their ratio (target ≥ 0.9), the agent process's peak RSS with the
tags (target ≤ 80 MB) and its CPU per 1,000 values/s. The last line is one JSON object.
``--quick``: 8 s per phase; ``--smoke``: 200 tags, 1 s per phase after a 0.5 s warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import add_smoke_flag, sized

SIGNALS_PER_MACHINE = 20


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _machines(tags: int) -> list[Any]:
    from zhizao.model import AssetPath

    n = max(1, tags // SIGNALS_PER_MACHINE)
    return [
        (
            AssetPath("bench", "a1", f"line{m // 50}", f"m{m:04d}"),
            {f"s{k:02d}": (0.0, "degC") for k in range(SIGNALS_PER_MACHINE)},
        )
        for m in range(n)
    ]


async def _server(port: int, tags: int, rate: float) -> None:
    from simulator.opcua.server import OpcUaServer
    from zhizao.model import Quality

    machines = _machines(tags)
    async with OpcUaServer(machines, port=port) as srv:
        print("READY", flush=True)
        ts = datetime(2026, 11, 23, tzinfo=UTC)
        written = 0
        started = time.monotonic()
        rounds = 0
        while True:
            ts += timedelta(milliseconds=10)
            rounds += 1
            for m, (_, signals) in enumerate(machines):
                await srv.write(
                    m, ts, [(s, float(rounds % 1000) + k / 100, Quality.GOOD) for k, s in enumerate(signals)]
                )
                written += len(signals)
                if rate > 0:  # smooth: one machine at a time, not bursts of every tag
                    ahead = started + written / rate - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            if rate <= 0:
                await asyncio.sleep(0)


async def _ready_go() -> None:
    """Tell the parent we are subscribed, wait until every client is: same measuring window."""
    print("SUBSCRIBED", flush=True)
    await asyncio.to_thread(sys.stdin.readline)


def _usage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


async def _raw(endpoint: str, tags: int, seconds: float, warmup: float) -> dict[str, float]:
    from asyncua.client.client import Client
    from asyncua.common.subscription import OverflowPolicy

    client = Client(endpoint, timeout=30)
    await client.connect()
    ns = await client.get_namespace_index("urn:zhizao:simulator")
    ua: Any = importlib.import_module("asyncua.ua")

    nodes = [client.get_node(ua.NodeId(f"{a}/{s}", ns)) for a, sigs in _machines(tags) for s in sigs]
    sub = await client.create_subscription(
        100, None, queue_maxsize=1_000_000, overflow=OverflowPolicy.DISCONNECT
    )
    handle = 0
    for i in range(0, len(nodes), 500):  # the agent's monitoring parameters, without the agent
        mirs = []
        for node in nodes[i : i + 500]:
            handle += 1
            rv = ua.ReadValueId(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value)
            flt = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
            params = ua.MonitoringParameters(
                ClientHandle=handle, SamplingInterval=0, QueueSize=1000, DiscardOldest=True, Filter=flt
            )
            mirs.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=rv, MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params
                )
            )
        await sub.create_monitored_items(mirs)
    count = 0

    async def consume() -> None:
        nonlocal count
        async for _ in sub:
            count += 1

    task = asyncio.create_task(consume())
    await _ready_go()
    await asyncio.sleep(warmup)
    c0, t0, cpu0 = count, time.monotonic(), _usage()[0]
    await asyncio.sleep(seconds)
    c1, t1, cpu1 = count, time.monotonic(), _usage()[0]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.disconnect()
    return {"values": c1 - c0, "seconds": t1 - t0, "cpu_s": cpu1 - cpu0, "rss_mb": _usage()[1]}


class _NullUplink:
    name = "null"

    async def __aenter__(self) -> _NullUplink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, batch: Any) -> None:
        return None


async def _agent(endpoint: str, seconds: float, warmup: float) -> dict[str, float]:
    from edge_agent.buffer import SqliteBuffer
    from edge_agent.connectors.opcua import OpcUaConnector, OpcUaConnectorConfig
    from edge_agent.deadletter import DeadLetter
    from edge_agent.forwarder import Forwarder
    from edge_agent.supervisor import supervise

    tmp = Path(tempfile.mkdtemp(prefix="zhizao-bench-"))
    cfg = OpcUaConnectorConfig.model_validate(
        {
            "endpoint": endpoint,
            "browse": [{"pattern": "Objects/bench/*/*/*/*"}],
            "publishing_interval_ms": 100,
            "sampling_interval_ms": 0,
            "queue_size": 1000,
            "subscribe_batch_size": 500,
            "request_timeout_s": 30,
        }
    )
    conn = OpcUaConnector(cfg, "bench-agent", tmp)
    async with SqliteBuffer(tmp / "buffer.sqlite", "bench-agent") as buf:
        fwd = Forwarder(buf, _NullUplink(), DeadLetter(tmp / "dead.jsonl"), max_items=5000, linger=0.2)
        tasks = [asyncio.create_task(supervise(conn, buf)), asyncio.create_task(fwd.run())]
        for _ in range(6000):
            if conn.stats.connected:
                break
            await asyncio.sleep(0.1)
        await _ready_go()
        await asyncio.sleep(warmup)
        c0, t0, cpu0 = conn.stats.samples_read, time.monotonic(), _usage()[0]
        await asyncio.sleep(seconds)
        c1, t1, cpu1 = conn.stats.samples_read, time.monotonic(), _usage()[0]
        committed, sent = buf.stats.committed, fwd.stats.sent_samples
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "values": c1 - c0,
        "seconds": t1 - t0,
        "cpu_s": cpu1 - cpu0,
        "rss_mb": _usage()[1],
        "committed": committed,
        "sent": sent,
        "tags": len(conn.tags),
    }


def _children(arg_lists: list[list[str]]) -> list[dict[str, float]]:
    logs = Path(tempfile.mkdtemp(prefix="zhizao-bench-logs-"))
    procs = []
    for args in arg_lists:
        with (logs / f"{args[1]}.log").open("w") as err:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.agent_opcua", *args],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
            )
    for args, proc in zip(arg_lists, procs, strict=True):
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "SUBSCRIBED":
            raise SystemExit(f"child {args[:2]} failed to subscribe")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results: list[dict[str, float]] = []
    for args, proc in zip(arg_lists, procs, strict=True):
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"child {args[:2]} failed (exit {proc.returncode}); see {logs}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="8 s per phase (finishes within a minute)")
    add_smoke_flag(p)
    p.add_argument("--tags", type=int, help="default 2000, smoke 200")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument(
        "--rate", type=float, default=2000.0, help="server write rate, values/s (0 = as fast as it can)"
    )
    p.add_argument("--child", choices=["server", "raw", "agent"], help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    a.tags = a.tags or sized(a, full=2000, quick=2000, smoke=200)
    seconds = sized(a, full=a.seconds, quick=8.0, smoke=1.0)
    warmup = sized(a, full=2.0, quick=2.0, smoke=0.5)
    if a.child == "server":
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        asyncio.run(_server(a.port, a.tags, a.rate))
        return
    if a.child == "raw":
        print(json.dumps(asyncio.run(_raw(a.endpoint, a.tags, seconds, warmup))))
        return
    if a.child == "agent":
        print(json.dumps(asyncio.run(_agent(a.endpoint, seconds, warmup))))
        return
    port = _free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/zhizao/sim"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.agent_opcua",
            "--child",
            "server",
            "--port",
            str(port),
            "--tags",
            str(a.tags),
            "--rate",
            str(a.rate),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "READY":
            raise SystemExit("the OPC UA server did not start")
        common = ["--endpoint", endpoint, "--tags", str(a.tags)] + (
            ["--smoke"] if a.smoke else ["--quick"] if a.quick else ["--seconds", str(seconds)]
        )
        # both clients subscribe to the same server at the same time: same offered load
        raw, agent = _children([["--child", "raw", *common], ["--child", "agent", *common]])
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    raw_rate = raw["values"] / raw["seconds"]
    agent_rate = agent["values"] / agent["seconds"]
    ratio = agent_rate / raw_rate if raw_rate else 0.0
    cpu_per_k = agent["cpu_s"] / agent["seconds"] / (agent_rate / 1000) if agent_rate else 0.0
    print(
        f"tags: {a.tags} ({int(agent.get('tags', 0))} resolved by the agent), {seconds:.0f} s per phase, "
        f"cpus: {os.cpu_count()}"
    )
    print(f"raw asyncua subscription: {raw_rate:,.0f} values/s (RSS {raw['rss_mb']:.1f} MB)")
    print(
        f"agent (connector -> SQLite buffer -> forwarder): {agent_rate:,.0f} values/s; "
        f"committed {int(agent['committed']):,}, forwarded {int(agent['sent']):,}"
    )
    print(f"ratio agent/raw: {ratio:.3f} (target >= 0.9)")
    print(f"agent peak RSS with {a.tags} tags: {agent['rss_mb']:.1f} MB (target <= 80 MB)")
    print(f"agent CPU: {cpu_per_k * 100:.1f} % of one core per 1,000 values/s")
    print(
        json.dumps(
            {
                "bench": "agent_opcua",
                "quick": a.quick,
                "smoke": a.smoke,
                "tags": a.tags,
                "agent_tags": int(agent.get("tags", 0)),
                "seconds": seconds,
                "raw_values_per_s": round(raw_rate, 1),
                "agent_values_per_s": round(agent_rate, 1),
                "rate": a.rate,
                "raw_ratio": round(ratio, 3),
                "target_raw_ratio": 0.9,
                "agent_rss_mb": round(agent["rss_mb"], 1),
                "target_rss_mb": 80,
                "agent_cpu_core_per_1000_values_s": round(cpu_per_k, 4),
                "agent_committed": int(agent["committed"]),
                "agent_forwarded": int(agent["sent"]),
            }
        )
    )


if __name__ == "__main__":
    main()
