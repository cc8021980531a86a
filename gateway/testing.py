"""Helpers for tests and benchmarks of the gateway: simulated agent batches, a gateway subprocess,
reading ingest's progress and its DuckDB file.

- :func:`simulated_batches` — the simulator's samples, split among agents by machine and cut into
  wire-format batches per machine, with stable ids (what agents in MQTT-uplink mode publish).
- :class:`GatewayProcess` — ``python -m gateway --config ...`` as a real subprocess, with
  ``kill()`` (SIGKILL) and ``stop()`` (SIGTERM), health polling.
- :func:`ingest_written` / :func:`duckdb_counts` — progress (ingest's Prometheus counter) and
  the final truth (rows and distinct rows in the DuckDB file, telemetry only).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from zhizao.model import AssetPath, Batch, Sample

REPO = Path(__file__).resolve().parents[1]


def simulated_batches(duration_s: float, n_agents: int = 2, ticks_per_batch: int = 10, seed: int = 7,
                      scenario: str | Path = REPO / "examples" / "workshop.toml") -> dict[str, list[Batch]]:
    """``{agent_id: [batches]}``; machine ``k`` belongs to agent ``k % n_agents``."""
    from simulator.engine import generate
    from simulator.scenario import load_scenario

    samples = list(generate(load_scenario(scenario), seed, duration_s))
    assets = sorted({s.asset for s in samples})
    owner = {a: f"agent-{i % n_agents}" for i, a in enumerate(assets)}
    per_asset: dict[AssetPath, list[Sample]] = defaultdict(list)
    for s in samples:
        per_asset[s.asset].append(s)
    out: dict[str, list[Batch]] = defaultdict(list)
    for asset in assets:
        rows = per_asset[asset]
        stamps = sorted({s.ts for s in rows})
        cuts = set(stamps[::ticks_per_batch])
        chunk: list[Sample] = []
        for s in rows:
            if s.ts in cuts and chunk and chunk[-1].ts != s.ts:
                out[owner[asset]].append(_batch(owner[asset], len(out[owner[asset]]), chunk))
                chunk = []
            chunk.append(s)
        if chunk:
            out[owner[asset]].append(_batch(owner[asset], len(out[owner[asset]]), chunk))
    return dict(out)


def _batch(agent: str, i: int, samples: list[Sample]) -> Batch:
    return Batch(agent, f"b7f3-{i + 1:010d}", i + 1, tuple(samples))


def write_config(path: Path, *, broker_port: int, ingest_url: str, gateway_id: str = "gw-1",
                 site: str = "plant", health_port: int = 0, extra: str = "", concurrency: int = 4,
                 gzip: bool = True, fleet_report_s: float = 3600, stall_after_s: float = 120,
                 bulk: bool = True) -> Path:
    """A gateway TOML in ``path`` (buffer and dead-letter file beside it)."""
    work = path.parent
    path.write_text(f'''id = "{gateway_id}"
site = "{site}"
deadletter_path = "{work / (gateway_id + '-deadletter.jsonl')}"
fleet_report_s = {fleet_report_s}
{extra}
[broker]
host = "127.0.0.1"
port = {broker_port}
keepalive_s = 5

[buffer]
path = "{work / (gateway_id + '-buffer.sqlite')}"
commit_interval_s = 0.02
synchronous = "normal"

[uplink]
concurrency = {concurrency}

[uplink.http]
url = "{ingest_url}"
gzip = {str(gzip).lower()}
bulk = {str(bulk).lower()}
linger_s = 0.2
backoff_initial_s = 0.2
backoff_cap_s = 2.0
timeout_s = 5.0

[health]
port = {health_port}
stall_after_s = {stall_after_s}
''')
    return path


class GatewayProcess:
    """``python -m gateway --config <file>`` as a subprocess (its log beside the config)."""

    def __init__(self, config_path: Path, health_port: int) -> None:
        self.config_path = config_path
        self.health_url = f"http://127.0.0.1:{health_port}"
        self.log_path = config_path.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(self.config_path)], cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited; log:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if self.health()["broker_connected"]:
                    return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"gateway did not connect; log:\n{self.log_path.read_text()[-3000:]}")

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` document (whatever the status code)."""
        doc: dict[str, Any] = httpx.get(f"{self.health_url}/healthz", timeout=2).json()
        return doc

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.health_url}{path}", timeout=5)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> int:
        """SIGTERM; returns the exit code."""
        code = 0
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                code = self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        self.process = None
        return code


def ingest_written(url: str, client: httpx.Client | None = None) -> int:
    """Samples ingest has stored from batches, single or bulk (not counting deduplicated resends),
    from its /metrics (through ``client`` when given: polling in a loop, reuse one — ``httpx.get``
    builds a new client, with a new TLS context, ~20 ms of CPU, per call)."""
    get = client.get if client is not None else httpx.get
    return written_in(get(f"{url}/metrics", timeout=5).text)


def written_in(metrics_text: str) -> int:
    """Samples stored from batches (single or bulk) according to ingest's metrics text."""
    return int(sum(float(m) for m in re.findall(
        r'^zhizao_ingest_samples_written_total\{source="(?:batch|bulk)"\} ([0-9.e+]+)$', metrics_text, re.M)))


def duckdb_counts(path: Path) -> tuple[int, int]:
    """``(rows, distinct rows)`` of telemetry (fleet assets excluded) in an ingest DuckDB file."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*), count(DISTINCT (asset, signal, ts, value, value_str)) FROM samples "
            "WHERE asset NOT LIKE '%/fleet/%'").fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0]), int(row[1])
