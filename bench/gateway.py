"""Site gateway throughput: broker → gateway → ingest, against a bare MQTT subscriber in the same run.

    python -m bench.gateway [--quick | --smoke] [--seconds S] [--ticks-per-batch T] [--agents N]

Simulated line data (``examples/workshop.toml``) is cut into per-machine wire-format batches of
``T`` ticks (what agents in MQTT-uplink mode publish) and published at QoS 1 as fast as the broker
takes them by ``N`` agents to a real Mosquitto. Two consumers read the same messages:

* the **ceiling**: a bare paho subscriber in this process that only counts messages and samples;
* the **gateway**: ``python -m gateway`` (subprocess) committing every message to its durable
  buffer (one record per agent batch) before the PUBACK and forwarding the agent batches to a real
  ``zhizao ingest`` subprocess (DuckDB) — in bulk requests (``POST /api/v1/batches/bulk``, many
  agent batches per request) unless ``--no-bulk`` — which stores them.

A third figure isolates the gateway's own cost: the same batches POSTed straight to a fresh
ingest subprocess with the same concurrency (``ingest_direct``: one batch per request, as before
bulk; with bulk, ``ingest_direct_bulk`` too: the same batches in bulk requests of
``--direct-bulk`` batches), i.e. the downstream ceilings.

Rates are samples / seconds from the first publish to the last sample counted (ceiling) or
stored in ingest (gateway). The last line is one JSON object; ``ratio`` is gateway / ceiling.
``intake_ratio`` compares the gateway's own southbound half — every message committed to its
durable buffer and acknowledged to the broker (committed samples; the agents' few status samples
are ignored) — with the same ceiling.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench import add_smoke_flag, sized
from gateway.mqtt.testing import Counter, FakeAgent
from gateway.testing import GatewayProcess, duckdb_counts, ingest_written, simulated_batches, write_config
from ingest.testing import IngestProcess
from tests.support.servers import Mosquitto
from zhizao.model import Batch
from zhizao.net import free_port
from zhizao.wire import CONTENT_TYPE, encode_batch


def _ingest_config(tmp: Path) -> Path:
    path = tmp / "ingest.toml"
    path.write_text(
        f'log_level = "warning"\n[storage]\nbackend = "duckdb"\n'
        f'[storage.duckdb]\npath = "{tmp / "ingest.duckdb"}"\n'
        f'[auth]\nenabled = false\ntokens_file = "{tmp / "tokens.json"}"\n'
        "[limits]\nmax_samples_per_batch = 100000\n"
    )
    return path


def _ingest_direct(tmp: Path, batches: dict[str, list[Batch]], concurrency: int,
                   per_request: int = 0) -> float:
    """Samples/s of POSTing ``batches`` to a fresh ingest subprocess with ``concurrency`` clients:
    one per request (``per_request`` 0), or ``per_request`` per bulk request."""
    tmp.mkdir()
    proc = IngestProcess(_ingest_config(tmp))
    proc.start()
    try:
        docs = [encode_batch(b) for bs in batches.values() for b in bs]
        total = sum(len(b) for bs in batches.values() for b in bs)
        if not per_request:
            url = f"{proc.url}/api/v1/batches"
            return total / asyncio.run(_post_all(url, docs, concurrency, CONTENT_TYPE))
        bodies = [b"\n".join(docs[i:i + per_request]) for i in range(0, len(docs), per_request)]
        return total / asyncio.run(_post_all(f"{proc.url}/api/v1/batches/bulk", bodies, concurrency,
                                             "application/x-ndjson"))
    finally:
        proc.kill()


async def _post_all(url: str, bodies: list[bytes], concurrency: int, ctype: str) -> float:
    headers = {"Content-Type": ctype}
    bodies = bodies[::-1]  # popped from the end: sent in order
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            while bodies:
                (await client.post(url, content=bodies.pop(), headers=headers)).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def _committed(poll: httpx.Client, gw: GatewayProcess) -> int:
    """Samples the gateway has committed (0 while it is too busy to answer within 10 s)."""
    try:
        return int(poll.get(f"{gw.health_url}/healthz", timeout=10).json()["committed_samples"])
    except httpx.HTTPError:
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small run (< 1 minute)")
    add_smoke_flag(p)
    p.add_argument("--seconds", type=float,
                   help="simulated seconds of the line (default 3600, quick 900, smoke 60)")
    p.add_argument("--ticks-per-batch", type=int, default=10, help="ticks of one machine per batch")
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=4, help="gateway uplink concurrency")
    p.add_argument("--gzip", action="store_true", help="gzip the gateway's POSTs (default off, as direct)")
    p.add_argument("--no-bulk", action="store_true", help="one POST per agent batch (as before bulk)")
    p.add_argument("--direct-bulk", type=int, default=100,
                   help="agent batches per bulk request in the ingest_direct_bulk figure")
    args = p.parse_args(argv)
    seconds = args.seconds or sized(args, full=3600.0, quick=900.0, smoke=60.0)
    batches = simulated_batches(seconds, n_agents=args.agents, ticks_per_batch=args.ticks_per_batch)
    total = sum(len(b) for bs in batches.values() for b in bs)
    n_msgs = sum(len(bs) for bs in batches.values())
    print(
        f"{total:,} samples in {n_msgs:,} batches ({total / n_msgs:.0f} samples each) "
        f"from {len(batches)} agents"
    )
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as d:
        tmp = Path(d)
        broker = Mosquitto(tmp / "mosquitto")
        broker.start()
        ingest = IngestProcess(_ingest_config(tmp))
        gw: GatewayProcess | None = None
        counter: Counter | None = None
        # One client for the progress polls: ``httpx.get`` builds a client (a fresh TLS context)
        # per call, ~23 ms of this process's CPU every 10 ms poll — taken from the publishers and
        # the bare subscriber (same GIL) and, after the intake, from ingest's cores.
        poll = httpx.Client(timeout=10)
        try:
            ingest.start()
            port = free_port()
            cfg = write_config(
                tmp / "gw.toml",
                broker_port=broker.port,
                ingest_url=ingest.url,
                health_port=port,
                concurrency=args.concurrency,
                gzip=args.gzip,
                bulk=not args.no_bulk,
            )
            gw = GatewayProcess(cfg, port)
            gw.start()
            counter = Counter(broker.host, broker.port)
            agents = [FakeAgent(broker.host, broker.port, a, "plant", window=200) for a in batches]
            for a in agents:
                a.connect()
            start = time.perf_counter()
            threads = [threading.Thread(target=a.publish, args=(batches[a.agent_id],)) for a in agents]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            published = time.perf_counter()
            intake_at = None
            while (counter.samples < total or intake_at is None) and time.perf_counter() - start < 600:
                if intake_at is None and _committed(poll, gw) >= total:
                    intake_at = time.perf_counter()
                time.sleep(0.01)
            assert intake_at is not None
            intake = total / (intake_at - start)
            while ingest_written(ingest.url, poll) < total and time.perf_counter() - start < 600:
                time.sleep(0.01)
            stored_at = time.perf_counter()
            assert counter.last is not None
            ceiling = total / (counter.last - start)
            rate = total / (stored_at - start)
            publish_rate = total / (published - start)
            print(f"publish (QoS 1, {len(agents)} agents): {publish_rate:,.0f} samples/s")
            print(f"bare MQTT subscriber (ceiling): {ceiling:,.0f} samples/s ({counter.samples:,} samples)")
            print(f"broker -> gateway buffer (committed, acked): {intake:,.0f} samples/s "
                  f"(ratio {intake / ceiling:.2f})")
            print(f"broker -> gateway -> ingest:    {rate:,.0f} samples/s (ratio {rate / ceiling:.2f})")
            health = gw.health()  # the last answers may still be on their way back: let the acks land
            while health["backlog_samples"] and time.perf_counter() - stored_at < 10:
                time.sleep(0.05)
                health = gw.health()
            gw.stop()
            gw = None
            ingest.stop()
            rows, distinct = duckdb_counts(tmp / "ingest.duckdb")
            print(f"ingest holds {rows:,} rows, {distinct:,} distinct (published {total:,})")
            result = {
                "bench": "gateway",
                "quick": args.quick,
                "smoke": args.smoke,
                "bulk": not args.no_bulk,
                "samples": total,
                "batches": n_msgs,
                "samples_per_batch": round(total / n_msgs, 1),
                "agents": len(agents),
                "publish_samples_per_s": round(publish_rate),
                "ceiling_samples_per_s": round(ceiling),
                "gateway_samples_per_s": round(rate),
                "ratio": round(rate / ceiling, 3),
                "target_ratio": 0.8,
                "intake_samples_per_s": round(intake),
                "intake_ratio": round(intake / ceiling, 3),
                "ingest_rows": rows,
                "ingest_distinct_rows": distinct,
                "gateway_backlog_at_end": health["backlog_samples"],
            }
            direct = _ingest_direct(tmp / "direct", batches, args.concurrency)
            print(
                f"same batches POSTed straight to ingest: {direct:,.0f} samples/s "
                f"(gateway reaches {rate / direct:.2f} of it)"
            )
            result.update(
                ingest_direct_samples_per_s=round(direct), ingest_direct_ratio=round(rate / direct, 3)
            )
            if not args.no_bulk:
                direct_bulk = _ingest_direct(tmp / "direct-bulk", batches, args.concurrency, args.direct_bulk)
                print(
                    f"same batches POSTed straight to ingest in bulk ({args.direct_bulk} per request): "
                    f"{direct_bulk:,.0f} samples/s (gateway reaches {rate / direct_bulk:.2f} of it)"
                )
                result.update(ingest_direct_bulk_samples_per_s=round(direct_bulk),
                              ingest_direct_bulk_ratio=round(rate / direct_bulk, 3))
            print(json.dumps(result))
        finally:
            poll.close()
            if counter is not None:
                counter.close()
            if gw is not None:
                gw.kill()
            ingest.kill()
            broker.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
