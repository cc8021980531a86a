"""Benchmark: how fast the agent's buffer drains after an uplink outage, vs the live rate.

    python -m bench.agent_drain [--quick | --smoke] [--outage 600] [--rate 2000]

The agent's real path — durable SQLite buffer, forwarder, HTTP uplink (gzip) — while a producer
puts ``--rate`` values/s (default 2,000) into the buffer. The receiver (a FastAPI/uvicorn process
decoding zhizao's wire format, deduplicating on the batch id) is down for ``--outage`` seconds
(full run 600 s = 10 minutes; ``--quick`` 25 s; ``--smoke`` 2 s at 20,000 values/s), then
started. Measured: the drain rate (samples delivered per second until the backlog is back to live
level, production continuing) and its ratio to the live rate (target ≥ 20×); and the raw ceiling
— the same batches POSTed straight to the same receiver by one httpx client — with the drain's
ratio to it. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import Request  # resolved at module level: FastAPI reads the handler's annotations

from bench import add_smoke_flag, sized

BATCH = 5000
FIRST_DELIVERY_LIMIT_S = 60.0
"""Seconds after the receiver is back within which the first batch must be delivered (backoff cap: 1 s)."""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _receiver(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from zhizao import wire

    app = FastAPI()
    seen: set[tuple[str, str]] = set()

    @app.post("/api/v1/batches")
    async def post(request: Request) -> JSONResponse:
        batch = wire.decode_batch(await request.body())
        key = (batch.producer, batch.batch_id)
        duplicate = key in seen
        seen.add(key)
        # ingest's BatchResult: the uplink lets a batch go only on an answer naming it
        return JSONResponse({"producer": batch.producer, "batch_id": batch.batch_id, "seq": batch.seq,
                             "accepted": len(batch), "duplicate": duplicate, "rejected": []})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def _samples(n: int, start: int) -> list[object]:
    from zhizao.model import AssetPath, Sample

    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    assets = [AssetPath("bench", "a1", "line1", f"m{m:02d}") for m in range(20)]
    return [
        Sample(
            assets[i % 20], f"s{(i // 20) % 100:02d}", t0 + timedelta(milliseconds=i), float(i % 997), "kW"
        )
        for i in range(start, start + n)
    ]


async def _bench(outage: float, rate: float, raw_s: float = 5.0) -> dict[str, float]:
    import httpx

    from edge_agent.buffer import SqliteBuffer
    from edge_agent.deadletter import DeadLetter
    from edge_agent.forwarder import Forwarder
    from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
    from zhizao import wire
    from zhizao.backoff import Backoff
    from zhizao.model import Batch

    tmp = Path(tempfile.mkdtemp(prefix="zhizao-drain-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = HttpUplinkConfig(url=url, gzip=True, max_batch_samples=BATCH, linger_s=0.5)
    produced = 0
    tick = 0.1
    per_tick = int(rate * tick)

    async with (SqliteBuffer(tmp / "buffer.sqlite", "bench-agent", group_series=True) as buf,
                HttpUplink(cfg) as up):
        fwd = Forwarder(
            buf,
            up,
            DeadLetter(tmp / "dead.jsonl"),
            max_items=BATCH,
            linger=0.5,
            backoff=Backoff(initial=0.2, cap=1.0),
        )

        async def produce() -> None:
            nonlocal produced
            started = time.monotonic()
            while True:
                await buf.put(_samples(per_tick, produced))  # type: ignore[arg-type]
                produced += per_tick
                await asyncio.sleep(max(0.0, started + produced / rate - time.monotonic()))

        producer = asyncio.create_task(produce())
        forwarder = asyncio.create_task(fwd.run())
        await asyncio.sleep(outage)
        backlog = buf.stats.backlog_samples
        receiver = _start_receiver(port)
        try:
            back = time.monotonic()
            sent_before = fwd.stats.sent_samples
            while fwd.stats.sent_samples <= sent_before:  # it may be in a retry delay (<= backoff cap)
                if forwarder.done():
                    forwarder.result()  # the forwarder died: show why
                if time.monotonic() - back > FIRST_DELIVERY_LIMIT_S:
                    # the uplink refuses the receiver's answers (see its ERROR above): do not hang
                    producer.cancel()
                    forwarder.cancel()
                    raise SystemExit(f"nothing delivered {FIRST_DELIVERY_LIMIT_S:.0f} s after the receiver "
                                     f"came back; the uplink refused: {dict(up.refused)}")
                await asyncio.sleep(0.005)
            first_delivery_s = time.monotonic() - back
            sent0, t0 = fwd.stats.sent_samples, time.monotonic()
            for _ in range(10**7):
                if buf.stats.backlog_samples <= 2 * BATCH:
                    break
                if forwarder.done():
                    forwarder.result()
                await asyncio.sleep(0.05)
            drain_s = time.monotonic() - t0
            drained = fwd.stats.sent_samples - sent0
            producer.cancel()
            forwarder.cancel()
            await asyncio.gather(producer, forwarder, return_exceptions=True)
            # raw ceiling: the same kind of batches, pre-encoded, POSTed by one client
            batch = Batch("bench-raw", "raw-0", 0, tuple(_samples(BATCH, 0)))  # type: ignore[arg-type]
            bodies = [
                wire.encode_batch(Batch("bench-raw", f"raw-{i}", i, batch.samples), compress=True)
                for i in range(8)
            ]
            headers = {"Content-Type": wire.CONTENT_TYPE, "Content-Encoding": "gzip"}
            async with httpx.AsyncClient(headers=headers, timeout=30) as client:
                n, t1 = 0, time.monotonic()
                while time.monotonic() - t1 < raw_s or n < 8:
                    r = await client.post(url + "/api/v1/batches", content=bodies[n % 8])
                    r.raise_for_status()
                    n += 1
                raw_s = time.monotonic() - t1
            raw_rate = n * BATCH / raw_s
        finally:
            receiver.terminate()
            receiver.wait(10)
    dead = float(sum(fwd.deadletter.counts.values()))
    return {
        "backlog": backlog,
        "drained": drained,
        "drain_s": drain_s,
        "raw_rate": raw_rate,
        "dead": dead,
        "first_delivery_s": first_delivery_s,
    }


def _start_receiver(port: int) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "bench.agent_drain", "--child-receiver", str(port)])
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="25 s outage (finishes within a minute)")
    p.add_argument("--outage", type=float, default=600.0, help="seconds the receiver is down (default 600)")
    p.add_argument("--rate", type=float, help="live values/s into the buffer (default 2000, smoke 20000)")
    add_smoke_flag(p)
    p.add_argument("--child-receiver", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_receiver:
        _receiver(a.child_receiver)
        return
    outage = sized(a, full=a.outage, quick=25.0, smoke=2.0)
    # smoke: a backlog of a few batches in 2 s, so that the drain loop runs too
    a.rate = a.rate or sized(a, full=2000.0, quick=2000.0, smoke=20000.0)
    r = asyncio.run(_bench(outage, a.rate, raw_s=sized(a, full=5.0, quick=5.0, smoke=0.5)))
    drain_rate = r["drained"] / r["drain_s"] if r["drain_s"] else 0.0
    ratio = drain_rate / a.rate
    raw_ratio = drain_rate / r["raw_rate"] if r["raw_rate"] else 0.0
    print(f"outage {outage:.0f} s at {a.rate:,.0f} values/s: backlog {int(r['backlog']):,} samples")
    print(
        f"drained {int(r['drained']):,} samples in {r['drain_s']:.1f} s while production continued: "
        f"{drain_rate:,.0f} samples/s = {ratio:.1f}x the live rate (target >= 20x)"
    )
    print(
        f"raw ceiling (pre-encoded gzip batches of {BATCH} POSTed to the same receiver): "
        f"{r['raw_rate']:,.0f} samples/s; drain/raw = {raw_ratio:.2f}"
    )
    print(
        json.dumps(
            {
                "bench": "agent_drain",
                "quick": a.quick,
                "smoke": a.smoke,
                "outage_s": outage,
                "live_rate": a.rate,
                "backlog": int(r["backlog"]),
                "drain_rate": round(drain_rate, 1),
                "live_ratio": round(ratio, 2),
                "target_live_ratio": 20,
                "first_delivery_s": round(r["first_delivery_s"], 2),
                "raw_rate": round(r["raw_rate"], 1),
                "raw_ratio": round(raw_ratio, 3),
                "dead_letters": int(r["dead"]),
            }
        )
    )


if __name__ == "__main__":
    main()
