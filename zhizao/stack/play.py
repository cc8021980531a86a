"""Playing a scenario through the whole stack and judging it: the engine of ``zhizao check``.

:func:`play` trains the reference anomaly models, runs :class:`~zhizao.stack.line.Line` for the
run's duration (optionally stopping the agent mid-run), drains everything into ingest, then reads
back from the store what a user would see — the KPI report, the anomaly events, per-series sample
counts — and compares it with the simulator's ledger and served samples (:mod:`zhizao.stack.verdict`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from analytics.kpi.config import KpiConfig
from analytics.kpi.service import kpi_report
from analytics.kpi.windows import GroupBy
from ingest.storage.base import Agg, EventQuery, SeriesQuery, Store
from simulator.scenario import Scenario
from zhizao.events import EventSource
from zhizao.signals import DERIVED_PREFIXES
from zhizao.stack.expectations import Expectations, default_duration, run_duration
from zhizao.stack.line import Line, LineOptions
from zhizao.stack.models import reference_models
from zhizao.stack.verdict import Result, completeness_results, detections, fault_results, kpi_results

log = logging.getLogger(__name__)
__all__ = ["Outcome", "default_duration", "has_mosquitto", "play", "stored_counts"]


def has_mosquitto() -> bool:
    """QA runs use a real Mosquitto when the box has one (the embedded amqtt broker acknowledges
    QoS 1 too slowly on a loaded machine at ×40, and the simulator then drops messages)."""
    return (shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")) is not None


@dataclass
class Outcome:
    results: list[Result]
    meta: dict[str, Any] = field(default_factory=dict)


async def stored_counts(store: Store, scope: str, start: datetime, end: datetime,
                        machines: set[str]) -> Counter[tuple[str, str]]:
    """Samples stored per series of the scenario's ``machines`` (fleet-health series of agents and
    gateways, and what analytics wrote back, are not the line's data)."""
    q = SeriesQuery(asset=scope, start=start, end=end, agg=Agg.COUNT, bucket=end - start, limit=1)
    out: Counter[tuple[str, str]] = Counter()
    for s in await store.query(q):
        if s.asset in machines and not s.signal.startswith(DERIVED_PREFIXES):
            out[(s.asset, s.signal)] += int(s.value.sum())
    return out


async def play(scenario: Scenario, exp: Expectations, *, seed: int, speed: float | None, data_dir: Path,
               duration_s: float | None = None, progress: Callable[[str], None] | None = None,
               gateway: bool = False) -> Outcome:
    say = progress or (lambda _m: None)
    duration = run_duration(scenario, exp, duration_s)
    train_s = min(max(duration, 1800.0), 3600.0)
    say(f"training reference anomaly models on a clean {train_s / 60:.0f}-minute run")
    models = await asyncio.to_thread(reference_models, scenario, seed, train_s)
    opts = LineOptions(scenario=scenario, data_dir=data_dir, seed=seed, speed=speed,
                       duration_s=duration, keep_served=True, models=models, watch_flags=True,
                       gateway=gateway, analytics_interval_s=1.0, mosquitto=has_mosquitto())
    start, end = scenario.start, scenario.start + timedelta(seconds=duration)
    async with Line(opts) as line:
        path = "agent → MQTT → gateway → ingest" if gateway else "agent → HTTP → ingest"
        say(f"line running: ingest {line.ingest.url}, OPC UA {line.sim.endpoint}, "
            f"MQTT {line.broker.url if line.broker else '—'}; {path}; {duration / 60:.0f} simulated minutes")
        chaos: asyncio.Task[None] | None = None
        if exp.run.stop_agent_at_s is not None:
            at = start + timedelta(seconds=exp.run.stop_agent_at_s)
            chaos = asyncio.create_task(_stop_agent(line, at, say))
        await line.finish()
        if chaos is not None:
            chaos.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos
        say("run finished; reading back KPIs, events and sample counts")
        store = line.ingest.store
        site = scenario.site
        report = await kpi_report(store, line.plant, KpiConfig(), site, start=start, end=end,
                                  group_by=GroupBy.SHIFT)
        wide = (start - timedelta(days=1), end + timedelta(days=1))
        events = await store.query_events(EventQuery(asset=site, start=wide[0], end=wide[1],
                                                     source=EventSource.ANOMALY, limit=100_000))
        machines = {str(a) for a, _ in scenario.machines()}
        stored = await stored_counts(store, site, *wide, machines)
        served: Counter[tuple[str, str]] = Counter((str(s.asset), s.signal) for s in line.sim.served)
        found, false_alarms = detections(scenario, line.sim.ledger_records, events, line.analytics.flags_seen)
        results = [
            *kpi_results(scenario, exp, line.sim.ledger_records, report),
            *fault_results(exp, found, false_alarms, scenario),
            *completeness_results(exp, served, stored, line.sim.mqtt_dropped),
        ]
        meta = {"scenario": scenario.name, "seed": seed, "gateway": gateway, "speed": speed,
                "duration_s": duration,
                "agent_stopped": line.agent.killed, "undelivered": line.undelivered,
                "agent_skipped_placeholders": line.agent.sink.skipped,
                "analytics": {"rounds": line.analytics.stats.rounds,
                              "scored_rows": line.analytics.stats.scored_rows,
                              "events": len(events)},
                "detections": [d.to_dict() for d in found]}
    return Outcome(results, meta)


async def _stop_agent(line: Line, at: datetime, say: Callable[[str], None]) -> None:
    while line.sim_now() < at:  # noqa: ASYNC110 - the simulated clock has no event to wait on
        await asyncio.sleep(0.05)
    say(f"chaos: stopping the edge agent at line time {at:%H:%M:%S} (it does not come back)")
    await line.agent.kill()
