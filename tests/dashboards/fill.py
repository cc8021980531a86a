"""Filling a real ingest (InfluxDB backend) the way the stack would: simulator samples posted as
batches, anomaly scores and episodes, KPI alerts, edge-fleet health reports, then the KPI feed.

The simulated line is ``examples/workshop.toml`` moved to end *now* (so the web dashboard's live
charts have data), with a 24 h shift starting with the data (always planned time) and an overheating fault on
``line1/imm-1`` in the second half (the anomaly the machine page must show).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from analytics.detectors.quality.model import ScrapModel
from analytics.events.config import ThresholdRule
from analytics.kpi.alerts import KpiAlerter
from analytics.kpi.config import KpiConfig
from analytics.kpi_feed.feed import KpiFeed
from analytics.scoring.context import ENERGY, design, score_signal, state_columns
from analytics.scoring.model import AnomalyModel
from analytics.scoring.presets import energy
from edge_agent.buffer import SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.http.config import HttpUplinkConfig
from edge_agent.uplinks.http.uplink import HttpUplink
from ingest.storage.base import Store
from simulator.engine import generate
from simulator.plant_export import plant_config
from simulator.scenario import Scenario, scenario_from_dict
from zhizao import signals
from zhizao.config import read_document
from zhizao.events import Contributor, Event, EventSource, Severity
from zhizao.fleet import FleetReport
from zhizao.model import AssetPath, Batch, Sample
from zhizao.plant import PlantConfig
from zhizao.signals import SCRAP_PROBABILITY
from zhizao.wire import encode_batch

ROOT = Path(__file__).resolve().parents[2]
MINUTES = 40
FAULTY = "plant1/a1/line1/imm-1"
AGENT = "agent-line2"
NOT_FEATURES = {signals.STATE, signals.STATE_REASON, signals.PRODUCT, *signals.COUNTERS, signals.POWER_KW}


@dataclass
class Filled:
    start: datetime
    end: datetime
    scenario: Scenario
    plant: PlantConfig
    samples: int
    agents: list[str]
    machines: list[str]


def scenario(end: datetime, minutes: int = MINUTES) -> Scenario:
    doc: dict[str, Any] = read_document(ROOT / "examples" / "workshop.toml")
    doc["start"] = end - timedelta(minutes=minutes)
    begins = doc["start"].strftime("%H:%M:%S")  # a 24 h shift starting with the data
    doc["calendar"] = {"timezone": "UTC", "shifts": [{"name": "day", "start": begins, "end": begins}]}
    doc["faults"] = [f for f in doc["faults"] if f["at"] < MINUTES * 60] + [
        {"machine": "line1/imm-1", "kind": "overheating", "at": MINUTES * 60 * 3 // 8,
         "duration_s": MINUTES * 60 * 5 // 8, "params": {"delta": 60}}]
    return scenario_from_dict(doc)


def post_samples(client: httpx.Client, samples: list[Sample], producer: str, size: int = 10_000) -> None:
    """Post ``samples`` in batches with the client's own headers (a token if ingest wants one)."""
    for i in range(0, len(samples), size):
        batch = Batch(producer, f"b-{i // size:06d}", i // size, tuple(samples[i:i + size]))
        resp = client.post("/api/v1/batches", content=encode_batch(batch),
                           headers={"Content-Type": "application/vnd.zhizao.batch+json"})
        assert resp.status_code in (200, 201, 202), resp.text


def _matrix(samples: list[Sample], start: datetime,
            exclude: frozenset[str] | set[str] = NOT_FEATURES) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per machine: its numeric signals (default: process signals) as a (second, signal) matrix,
    gaps filled."""
    cols: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    t0 = int(start.timestamp())
    for s in samples:
        if s.signal in exclude or isinstance(s.value, str | bool):
            continue
        cols[str(s.asset)][s.signal][int(s.ts.timestamp()) - t0] = float(s.value)
    n = MINUTES * 60
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for asset, by_signal in sorted(cols.items()):
        names = sorted(by_signal)
        X = np.full((n, len(names)), np.nan)
        for j, name in enumerate(names):
            for k, v in by_signal[name].items():
                if 0 <= k < n:
                    X[k, j] = v
        for j in range(X.shape[1]):  # forward fill, then back fill the head
            col = X[:, j]
            idx = np.where(~np.isnan(col), np.arange(n), 0)
            np.maximum.accumulate(idx, out=idx)
            col[:] = col[idx]
            first = np.flatnonzero(~np.isnan(col))
            col[np.isnan(col)] = col[first[0]] if len(first) else 0.0
        out[asset] = (names, X)
    return out


def running_mask(samples: list[Sample], start: datetime) -> dict[str, np.ndarray]:
    """Per machine, per second: was it running (its last ``state`` sample)."""
    return {asset: labels == "running" for asset, labels in state_labels(samples, start).items()}


def anomaly_scores(matrices: dict[str, tuple[list[str], np.ndarray]], running: dict[str, np.ndarray],
                   start: datetime) -> tuple[list[Sample], list[Event]]:
    """Per machine, on its running seconds only (idle and down are other regimes): fit on those of
    the first third, score those after it; an episode for the faulty machine once its vote flag is
    up, with the mean contributions over the flagged rows."""
    out: list[Sample] = []
    events: list[Event] = []
    train = MINUTES * 60 // 3
    for asset, (names, all_rows) in matrices.items():
        rows = np.flatnonzero(running.get(asset, np.ones(len(all_rows), bool)))
        fit_rows, score_rows = rows[rows < train], rows[rows >= train]
        if len(fit_rows) < 60 or not len(score_rows):
            continue
        model = AnomalyModel().fit(all_rows[fit_rows], names)
        scored = model.stream().push(all_rows[score_rows], with_contributions=True)
        path = AssetPath.parse(asset)
        for k in range(0, len(scored.score), 5):
            ts = start + timedelta(seconds=int(score_rows[k]))
            out.append(Sample(path, signals.ANOMALY_SCORE, ts, round(float(scored.score[k]), 4)))
        flagged = np.flatnonzero(scored.flag)
        if asset == FAULTY and len(flagged) and scored.contributions is not None:
            share = scored.contributions[flagged].mean(axis=0)
            per_signal: dict[str, float] = defaultdict(float)
            for f, w in zip(model.feature_names(), share, strict=True):
                per_signal[next(c for c in names if f.startswith(c))] += float(w)
            top = sorted(per_signal.items(), key=lambda kv: -kv[1])[:3]
            events.append(Event(
                id=f"anomaly:{asset}:{int(start.timestamp()) + int(score_rows[flagged[0]])}",
                source=EventSource.ANOMALY, rule="robust_z", asset=asset, severity=Severity.CRITICAL,
                start=start + timedelta(seconds=int(score_rows[flagged[0]])),
                value=float(scored.score[-1]), peak=float(scored.score[flagged].max()), threshold=0.5,
                message="process signals far from normal operation",
                contributors=[Contributor(signal=s, weight=round(w, 4)) for s, w in top]))
    return out, events


def state_labels(samples: list[Sample], start: datetime) -> dict[str, np.ndarray]:
    """Per machine, per second: its state (its last ``state`` sample; ``None`` before the first)."""
    n = MINUTES * 60
    t0 = int(start.timestamp())
    changes: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for s in samples:
        if s.signal == signals.STATE:
            changes[str(s.asset)].append((int(s.ts.timestamp()) - t0, str(s.value)))
    out: dict[str, np.ndarray] = {}
    for asset, points in changes.items():
        labels = np.full(n, None, dtype=object)
        for k, state in sorted(points):
            labels[max(k, 0):] = state
        out[asset] = labels
    return out


def energy_scores(samples: list[Sample], states: dict[str, np.ndarray], start: datetime) -> list[Sample]:
    """Per machine with ``power_kw``: the energy model as ``train --model energy`` builds it (state
    one-hot + power, every second), fit on the first third, ``anomaly_score.energy`` after it."""
    out: list[Sample] = []
    train = MINUTES * 60 // 3
    power = _matrix([s for s in samples if s.signal == signals.POWER_KW], start, exclude=set())
    for asset, (names, X) in power.items():
        if asset not in states:
            continue
        columns = [*state_columns(), signals.POWER_KW]
        rows = design(columns, names, X, states[asset][:len(X)])
        model = AnomalyModel(spec=energy(), states="all").fit(rows[:train], columns)
        scored = model.stream().push(rows[train:])
        path = AssetPath.parse(asset)
        for k in range(0, len(scored.score), 5):
            ts = start + timedelta(seconds=train + k)
            out.append(Sample(path, score_signal(ENERGY), ts, round(float(scored.score[k]), 4)))
    return out


def scrap_probabilities(samples: list[Sample], matrices: dict[str, tuple[list[str], np.ndarray]],
                        start: datetime) -> list[Sample]:
    """Per machine that scrapped parts: the scrap model fitted on its cycles (process signals at
    each completed part, label = the part was scrap), its probability written at each cycle."""
    t0 = int(start.timestamp())
    counters: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for s in samples:
        if s.signal in (signals.PARTS_TOTAL, signals.PARTS_SCRAP) and not isinstance(s.value, str):
            counters[(str(s.asset), s.signal)].append((int(s.ts.timestamp()) - t0, float(s.value)))
    out: list[Sample] = []
    for asset, (_names, X) in matrices.items():
        total = sorted(counters.get((asset, signals.PARTS_TOTAL), []))
        scrap = sorted(counters.get((asset, signals.PARTS_SCRAP), []))
        cycles = [k for (k, v), (_, prev) in zip(total[1:], total[:-1], strict=True)
                  if v > prev and k < len(X)]
        scrapped = {k for (k, v), (_, prev) in zip(scrap[1:], scrap[:-1], strict=True) if v > prev}
        y = np.array([1 if any(k + d in scrapped for d in (-1, 0, 1)) else 0 for k in cycles])
        if len(set(y.tolist())) < 2:
            continue
        model = ScrapModel().fit(X[cycles], y)
        p = model.scrap_probability(X[cycles])
        path = AssetPath.parse(asset)
        out += [Sample(path, SCRAP_PROBABILITY, start + timedelta(seconds=k), round(float(v), 4))
                for k, v in zip(cycles, p, strict=True)]
    return out


def fleet_samples(start: datetime, end: datetime) -> tuple[list[Sample], list[str]]:
    """Two agents report every 30 s; agent-2 is offline for ten minutes in the middle and comes
    back with a backlog, a reconnect and a few drops."""
    out: list[Sample] = []
    t = start
    sent = {"agent-1": 0, "agent-2": 0}
    while t < end:
        minute = (t - start).total_seconds() / 60
        for agent in list(sent):
            offline = agent == "agent-2" and 15 <= minute < 25
            if offline:
                continue
            back = agent == "agent-2" and minute >= 25
            sent[agent] += 900
            backlog = max(0, int(3000 - (minute - 25) * 600)) if back else 12
            out += FleetReport("plant1", agent, backlog_samples=backlog, backlog_age_s=backlog / 100.0,
                               dropped_total=40 if back else 0, dead_letters_total=3 if back else 0,
                               reconnects_total=1 if back else 0, sent_total=sent[agent]).samples(t)
        t += timedelta(seconds=30)
    return out, sorted(sent)


async def kpis_and_alerts(store: Store, sink: Store, plant: PlantConfig, start: datetime, end: datetime
                          ) -> list[Event]:
    """Run the KPI feed over the range (every 5 min) and the KPI alerter at the end."""
    cfg = KpiConfig()
    baselines = {"plant1/a1/line1": 0.5, "plant1/a1/line2": 0.2, **{m.asset: 0.4 for m in plant.machines}}
    feed = KpiFeed(store, sink, plant, cfg, ["plant1"], baselines=baselines)
    await feed.backfill(start, end, timedelta(minutes=5))
    rule = ThresholdRule(name="oee-low", kpi="oee", op="<", threshold=0.9, window_s=1200, min_planned_s=60)
    return await KpiAlerter([rule]).evaluate(store, plant, cfg, end)


async def through_agent(url: str, samples: list[Sample], workdir: Path, agent: str = AGENT) -> None:
    """The edge-agent path: samples into a real durable buffer, forwarded by the real forwarder and
    HTTP uplink to ingest; after each batch the agent reports its health (``zhizao.fleet``) from
    its real buffer and forwarder counters, through the same buffer and uplink."""
    async with SqliteBuffer(workdir / "buffer.db", agent, synchronous="normal") as buf, \
            HttpUplink(HttpUplinkConfig(url=url)) as uplink:
        fwd = Forwarder(buf, uplink, DeadLetter(workdir / "dead-letters.jsonl"), max_items=5000, linger=0)
        for i in range(0, len(samples), 20_000):
            await buf.put(samples[i:i + 20_000])
        await buf.flush()
        while (batch := await buf.take(5000)) is not None:
            await fwd.deliver(batch)
            if all(s.asset.area == "fleet" for s in batch.samples):
                continue  # only health reports went out: nothing new to report
            stats = buf.stats
            report = FleetReport("plant1", agent, backlog_samples=stats.backlog_samples,
                                 backlog_age_s=stats.backlog_age(), dropped_total=sum(stats.dropped.values()),
                                 dead_letters_total=fwd.stats.dead_lettered,
                                 reconnects_total=fwd.stats.retries, sent_total=fwd.stats.sent_samples)
            await buf.put(report.samples(datetime.now(UTC)))
            await buf.flush()
        assert fwd.stats.sent_samples >= len(samples) and fwd.stats.dead_lettered == 0


def fill(client: httpx.Client, sc: Scenario, workdir: Path) -> Filled:
    start = sc.start
    end = start + timedelta(minutes=MINUTES)
    samples = list(generate(sc, 7, MINUTES * 60))
    line2 = [s for s in samples if s.asset.line == "line2"]
    post_samples(client, [s for s in samples if s.asset.line != "line2"], "sim-offline")
    asyncio.run(through_agent(str(client.base_url), line2, workdir))
    matrices = _matrix(samples, start)
    scores, events = anomaly_scores(matrices, running_mask(samples, start), start)
    scores += energy_scores(samples, state_labels(samples, start), start)
    post_samples(client, scores + scrap_probabilities(samples, matrices, start), "analytics-test")
    fleet, agents = fleet_samples(start, end)
    post_samples(client, fleet, "fleet-test")
    if events:
        resp = client.post("/api/v1/events", json=[e.model_dump(mode="json") for e in events])
        assert resp.status_code == 200, resp.text
    return Filled(start, end, sc, plant_config(sc), len(samples), [*agents, AGENT],
                  [str(a) for a, _ in sc.machines()])


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
