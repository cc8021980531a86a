"""The production scoring service (``zhizao analytics serve``) against real components: ingest on
uvicorn (DuckDB behind it), the simulator's line with an injected bearing fault, Mosquitto for the
MQTT alert sink, and the service as a real subprocess killed with SIGKILL.

Models are trained from a fault-free reference run of the simulator (another seed) stored in a
DuckDB file, with ``zhizao analytics train``; the service then scores a run with a bearing-wear
fault on ``imm-1`` posted to ingest as an agent would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from analytics.cli import main as analytics_main
from analytics.errors import ModelMismatch
from analytics.events import EventEmitter
from analytics.events.signature import verify_webhook_signature
from analytics.events.sinks.http import WebhookSink
from analytics.registry import ModelRegistry
from analytics.scoring.service import ScoringService, ServiceConfig, load_service_config
from analytics.scoring.service.machine import MachineWorker
from analytics.scoring.service.source import IngestApiIO
from analytics.scoring.service.state import MachineState, StateStore
from ingest.storage.base import SampleFrame, Series, SeriesQuery
from ingest.storage.duckdb.store import DuckDBStore
from ingest.testing import run_server, server_settings
from simulator.engine import generate
from simulator.scenario import FaultConfig, Scenario, load_scenario
from tests.analytics.test_training_live import ListSink
from tests.support.servers import InfluxDB, Mosquitto
from tests.support.waiting import eventually
from tests.support.webhook import WebhookReceiver
from zhizao.errors import StoreUnavailable
from zhizao.events import Event, EventState
from zhizao.model import Batch, Sample
from zhizao.net import free_port
from zhizao.topics import ALERTS_FILTER, alert_topic
from zhizao.wire import encode_batch

ROOT = Path(__file__).resolve().parents[2]
LINE = "plant1/a1/line1"
IMM = f"{LINE}/imm-1"
PACK = f"{LINE}/pack-1"
FAULT_AT_S, FAULT_S = 1500, 1500
WINDOW_S = 60.0


def _scenario() -> Scenario:
    return load_scenario(ROOT / "examples" / "compact.yaml")


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with models of imm-1 and pack-1 trained on a fault-free run (seed 2)."""
    tmp = tmp_path_factory.mktemp("train")
    sc = _scenario()
    ref = sc.model_copy(update={"faults": []})

    async def store() -> None:
        async with DuckDBStore(tmp / "ref.duckdb") as s:
            await s.write(SampleFrame.from_samples(list(generate(ref, 2, 3600))))

    asyncio.run(store())
    for asset in (IMM, PACK):
        rc = analytics_main(["train", "--scope", asset, "--from", sc.start.isoformat(), "--to",
                             (sc.start + timedelta(hours=1)).isoformat(), "--duckdb", str(tmp / "ref.duckdb"),
                             "--registry", str(tmp / "models")])
        assert rc == 0
    return tmp / "models"


@pytest.fixture(scope="module")
def fault_run() -> list[Sample]:
    """One hour of the line (seed 1) with vibration drifting up on imm-1 from minute 25 to 50."""
    sc = _scenario()
    fault = FaultConfig(machine="line1/imm-1", kind="bearing_wear", at=FAULT_AT_S, duration_s=FAULT_S,
                        params={"rate_per_h": 30.0})
    flt = sc.model_copy(update={"faults": [fault]})
    return list(generate(flt, 1, 3600))


@pytest.fixture
def registry(registry_template: Path, tmp_path: Path) -> Path:
    shutil.copytree(registry_template, tmp_path / "models")
    return tmp_path / "models"


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "ingest").mkdir()
    with run_server(server_settings(tmp_path / "ingest")) as url:
        yield url




def post(url: str, samples: list[Sample], producer: str = "sim") -> None:
    """Post ``samples`` to ingest as an agent would (5,000 per batch)."""
    with httpx.Client(timeout=60) as c:
        for i in range(0, len(samples), 5000):
            batch = Batch(producer, f"{producer}-{i}", i // 5000, tuple(samples[i:i + 5000]))
            r = c.post(f"{url}/api/v1/batches", content=encode_batch(batch),
                       headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.text


def config(tmp: Path, url: str, registry: Path, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "scopes": [LINE], "registry": str(registry), "state_dir": str(tmp / "state"), "interval_s": 0.1,
        "window_s": WINDOW_S, "lateness_s": 5.0, "quiet_close_s": 1.0, "backfill_s": 7200.0,
        "registry_poll_s": 0.2, "clear_after_s": 60.0, "ingest": {"url": url}, "health": {"port": 0}}
    doc.update(over)
    return doc


def scores(url: str, asset: str, signal: str = "anomaly_score") -> tuple[list[int], list[float]]:
    r = httpx.get(f"{url}/api/v1/series", params={
        "asset": asset, "signal": signal, "epoch": "us", "start": "2026-11-22T00:00:00Z",
        "end": "2026-11-24T00:00:00Z"})
    series = r.json()["series"]
    if not series:
        return [], []
    return series[0]["ts"], series[0]["values"]


def events(url: str, asset: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = httpx.get(f"{url}/api/v1/events", params={"asset": asset}).json()["events"]
    return out


def end_us(samples: list[Sample]) -> int:
    last = max(s.ts for s in samples)
    return int((last.timestamp() // WINDOW_S + 1) * WINDOW_S * 1e6)


def done(svc: ScoringService, asset: str, until_us: int) -> bool:
    w = svc.workers.get(asset)
    return w is not None and w.state is not None and w.state.cursor_us >= until_us


async def test_scores_events_mqtt_webhook_and_a_refused_model(
        tmp_path: Path, ingest: str, registry: Path, fault_run: list[Sample], mosquitto: Mosquitto,
        webhook: WebhookReceiver) -> None:
    # pack-1's artifact claims another numpy: refused with the reason; imm-1 is scored regardless
    meta_path = registry / PACK.replace("/", "__") / "v0001" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["libraries"]["numpy"] = "1.0.0"
    meta_path.write_text(json.dumps(meta))
    post(ingest, fault_run)
    received: list[Event] = []

    async def listen(ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe(ALERTS_FILTER, qos=1)
            ready.set()
            async for msg in c.messages:
                received.append(Event.model_validate_json(bytes(msg.payload)))

    ready = asyncio.Event()
    listener = asyncio.create_task(listen(ready))
    await asyncio.wait_for(ready.wait(), 10)
    cfg = ServiceConfig.model_validate(config(tmp_path, ingest, registry, sinks={
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "retain": False},
        "webhooks": [{"url": webhook.url, "secret": "s3cret"}]}))
    svc = ScoringService(cfg)
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: done(svc, IMM, end_us(fault_run)), 60, "imm-1 scored to the end")
        await eventually(lambda: bool(received), 10, "an alert on MQTT")
    finally:
        svc.stop()
        await task
        listener.cancel()
    ok, doc = svc.health()
    machines = {m["machine"]: m for m in doc["machines"]}
    # a refused model is a degradation: /healthz (and /readyz) 503 naming it — review A4; imm-1 is
    # scored regardless, and cnc-1 without any model is not a failure
    assert not ok and doc["status"] == "degraded" and [f["machine"] for f in doc["failing"]] == [PACK]
    assert machines[IMM]["status"] == "ok" and machines[IMM]["model"] == "v0001"
    assert machines[PACK]["status"] == "model_mismatch"
    assert "numpy 1.0.0 was used to train it" in machines[PACK]["problem"]
    assert machines[f"{LINE}/cnc-1"]["status"] == "no_model"

    ts, values = scores(ingest, IMM)
    assert len(set(ts)) == len(ts) and ts == running_seconds(fault_run, IMM)  # one per running second
    assert all(0 <= v < 1 for v in values)
    assert scores(ingest, PACK) == ([], [])

    evs = events(ingest, IMM)
    assert len(evs) == 1, evs                                      # the fault, and no false alarm
    ev = evs[0]
    fault_start = _scenario().start + timedelta(seconds=FAULT_AT_S)
    start = Event.model_validate(ev).start
    assert fault_start <= start <= fault_start + timedelta(seconds=FAULT_S)
    assert ev["rule"] == "model-v0001" and ev["contributors"][0]["signal"] == "vibration_rms"
    assert ev["peak"] > 0.5
    assert {e.id for e in received} == {ev["id"]}                  # the same episode on MQTT
    assert received[-1].state.value == "resolved"
    hooked = [d.json()["events"] for d in webhook.received]
    assert {e["id"] for batch in hooked for e in batch} == {ev["id"]}  # ... and on the webhook, signed
    for d in webhook.received:  # t=<unix s>,v1=<HMAC of "<t>.<body>">, checked as a receiver would
        assert verify_webhook_signature("s3cret", d.body, d.signature, now=d.received_at), d.signature


def _spawn(cfg_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "analytics.cli", "serve", "--config", str(cfg_path)],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _health(port: int) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
    except httpx.HTTPError:
        return {}
    return doc


def _cursor(port: int, asset: str) -> float:
    for m in _health(port).get("machines", []):
        if m["machine"] == asset and m["cursor"] is not None:
            return float(m["cursor"])
    return 0.0


async def test_kill9_restart_no_duplicates_no_gaps_same_event_ids(tmp_path: Path, registry: Path,
                                                                   fault_run: list[Sample]) -> None:
    """The service is killed with SIGKILL mid-way and restarted; its output must be identical to
    that of a run never interrupted (another ingest holding the same data)."""
    until = end_us(fault_run) / 1e6
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (run_server(server_settings(tmp_path / "a")) as url_a,
          run_server(server_settings(tmp_path / "b")) as url_b):
        post(url_a, fault_run)
        post(url_b, fault_run)
        port = free_port()
        doc = config(tmp_path / "a", url_a, registry, max_windows_per_round=1, interval_s=0.2,
                     backfill_s=3600.0, health={"port": port})
        cfg_path = tmp_path / "a" / "scoring.toml"
        cfg_path.write_text(_toml(doc))
        log = tmp_path / "a" / "scoring.log"
        proc = _spawn(cfg_path, log)
        try:
            first = _scenario().start.timestamp() + FAULT_AT_S + 600  # inside the episode: it must survive
            await eventually(lambda: _cursor(port, IMM) >= first, 60, "the first part scored", in_thread=True)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at = _cursor_from_state(cfg_path, IMM)
            assert killed_at < until, "killed too late to test anything"
            proc = _spawn(cfg_path, log)
            await eventually(lambda: _cursor(port, IMM) >= until, 90, "the rest scored after restart",
                             in_thread=True)
            metrics = (await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics")).text
            assert f'zhizao_scoring_rows_total{{machine="{IMM}"}}' in metrics
            assert f'zhizao_scoring_lag_seconds{{machine="{IMM}"}} 0.0' in metrics
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        # the same service never interrupted, on ingest b
        cfg_b = ServiceConfig.model_validate(config(tmp_path / "b", url_b, registry, backfill_s=3600.0))
        svc = ScoringService(cfg_b)
        task = asyncio.create_task(svc.run())
        try:
            await eventually(lambda: done(svc, IMM, int(until * 1e6)), 60, "the reference run")
        finally:
            svc.stop()
            await task
        ts_a, v_a = scores(url_a, IMM)
        ts_b, v_b = scores(url_b, IMM)
        assert len(set(ts_a)) == len(ts_a), "duplicate scores after the restart"
        assert ts_a == ts_b, "windows lost or added by the restart"
        assert v_a == pytest.approx(v_b, abs=1e-12)
        ev_a, ev_b = events(url_a, IMM), events(url_b, IMM)
        assert ev_a and [e["id"] for e in ev_a] == [e["id"] for e in ev_b]
        def fields(evs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
            return [(e["state"], e["start"], e["end"], e["contributors"][0]["signal"]) for e in evs]

        assert fields(ev_a) == fields(ev_b)
        assert [e["peak"] for e in ev_a] == pytest.approx([e["peak"] for e in ev_b], abs=1e-12)
    assert "Traceback" not in log.read_text()


def _cursor_from_state(cfg_path: Path, asset: str) -> float:
    from analytics.scoring.service.state import StateStore

    st = StateStore(load_service_config(cfg_path).state_dir).load(asset)
    return 0.0 if st is None else st.cursor_us / 1e6


def _toml(doc: dict[str, Any]) -> str:
    lines, tables = [], []
    for k, v in doc.items():
        if isinstance(v, dict):
            tables.append(f"[{k}]\n" + "".join(f"{kk} = {json.dumps(vv)}\n" for kk, vv in v.items()))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n\n" + "\n".join(tables)


async def test_promotion_refusal_and_rollback_picked_up_live(tmp_path: Path, ingest: str, registry: Path,
                                                              fault_run: list[Sample]) -> None:
    """v0001 scores the first part; v0002 (promoted live) the second, where the fault starts; a
    v0003 whose artifact does not match is refused — imm-1 waits while the third part arrives —
    and the rollback to v0002 catches up: every running second scored once, across all switches."""
    sc = _scenario()
    cut1 = sc.start + timedelta(seconds=FAULT_AT_S)              # both on the window grid
    cut2 = sc.start + timedelta(seconds=FAULT_AT_S + 900)
    parts = [[s for s in fault_run if s.ts < cut1], [s for s in fault_run if cut1 <= s.ts < cut2],
             [s for s in fault_run if s.ts >= cut2]]
    post(ingest, parts[0], "sim-1")
    svc = ScoringService(ServiceConfig.model_validate(config(tmp_path, ingest, registry)))
    task = asyncio.create_task(svc.run())
    reg = ModelRegistry(registry)
    try:
        await eventually(lambda: done(svc, IMM, int(cut1.timestamp() * 1e6)), 60, "the first part scored")
        model = reg.load(IMM)                                     # a stricter vote, promoted live
        model.spec = model.spec.model_copy(update={"vote_fraction": 0.8})
        v2 = reg.save(IMM, model, notes="stricter vote").version
        reg.promote(IMM, v2)
        await eventually(lambda: svc.workers[IMM].version == v2, 10, "the promotion picked up")
        await asyncio.to_thread(post, ingest, parts[1], "sim-2")
        await eventually(lambda: done(svc, IMM, int(cut2.timestamp() * 1e6)), 60, "the second part scored")

        v3 = reg.save(IMM, model, notes="pickled elsewhere").version
        meta_path = registry / IMM.replace("/", "__") / v3 / "metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["libraries"]["scikit-learn"] = "0.24.2"
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(ModelMismatch, match=r"scikit-learn 0\.24\.2 was used to train it"):
            reg.promote(IMM, v3)                                  # `models promote` checks first
        assert reg.active(IMM) == v2
        # promoted where the check passed (another installation's libraries): the service refuses it
        (meta_path.parent.parent / "active.json").write_text(json.dumps({"active": v3,
                                                                          "history": ["v0001", v2, v3]}))
        await eventually(lambda: svc.workers[IMM].status == "model_mismatch", 10, "v0003 refused")
        assert "scikit-learn 0.24.2 was used to train it" in svc.workers[IMM].problem
        await asyncio.to_thread(post, ingest, parts[2], "sim-3")
        await asyncio.sleep(2.0)                                  # many rounds: imm-1 must not move
        st = svc.workers[IMM].state
        assert st is not None and st.cursor_us == int(cut2.timestamp() * 1e6)
        assert reg.rollback(IMM) == v2
        await eventually(lambda: done(svc, IMM, end_us(fault_run)), 60, "caught up after the rollback")
        assert svc.workers[IMM].version == v2 and svc.workers[IMM].status == "ok"
    finally:
        svc.stop()
        await task
    ts, _ = scores(ingest, IMM)
    assert ts == running_seconds(fault_run, IMM)                # no gap, no duplicate at any switch
    evs = events(ingest, IMM)
    assert evs and {e["rule"] for e in evs} == {f"model-{v2}"}, evs


def running_seconds(samples: list[Sample], asset: str) -> list[int]:
    """µs timestamps of the seconds (1 s ticks) of ``samples`` in which ``asset`` was running."""
    mine = [s for s in samples if str(s.asset) == asset]
    states = sorted((s.ts, s.value) for s in mine if s.signal == "state")
    ticks = sorted({int(s.ts.timestamp() * 1e6) for s in mine})
    out, k, cur = [], 0, None
    for t in ticks:
        while k < len(states) and states[k][0].timestamp() * 1e6 <= t:
            cur = states[k][1]
            k += 1
        if cur == "running":
            out.append(t)
    return out


async def test_ingest_outage_is_retried_counted_and_resumed(tmp_path: Path, registry: Path,
                                                            fault_run: list[Sample]) -> None:
    settings = server_settings(tmp_path)
    port = free_port()
    split = _scenario().start + timedelta(seconds=FAULT_AT_S)
    url = f"http://127.0.0.1:{port}"
    svc = ScoringService(ServiceConfig.model_validate(
        config(tmp_path, url, registry, health={"port": 0, "stall_after_s": 1.0})))
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: svc.failures.get("store_unavailable", 0) >= 2, 20, "failed rounds counted")
        await eventually(lambda: not svc.health()[0], 10, "unhealthy")
        assert not task.done()
        with run_server(settings, port=port):
            await asyncio.to_thread(post, url, [s for s in fault_run if s.ts < split], "sim-1")
            await eventually(lambda: done(svc, IMM, int(split.timestamp() * 1e6)), 60,
                             "scored after the outage")
        await eventually(lambda: svc.failures["store_unavailable"] >= 3, 20, "the second outage")
        with run_server(settings, port=port):
            await asyncio.to_thread(post, url, [s for s in fault_run if s.ts >= split], "sim-2")
            await eventually(lambda: done(svc, IMM, end_us(fault_run)), 60, "the rest scored")
            assert svc.health()[0]
            ts, _ = await asyncio.to_thread(scores, url, IMM)
            evs = await asyncio.to_thread(events, url, IMM)
    finally:
        svc.stop()
        await task
    assert ts == running_seconds(fault_run, IMM)                 # nothing lost, nothing twice
    assert len(evs) == 1 and evs[0]["contributors"][0]["signal"] == "vibration_rms"


async def test_store_mode_scores_a_duckdb_file_and_stores_events(tmp_path: Path, registry: Path,
                                                                 fault_run: list[Sample]) -> None:
    """``[storage]`` instead of ``[ingest]``: the service opens the store itself (here a DuckDB file
    no ingest holds) and upserts the events into it."""
    await _store_mode({"backend": "duckdb", "duckdb": {"path": str(tmp_path / "line.duckdb")}},
                      tmp_path, registry, fault_run, timeout_s=60)


def test_sample_and_deploy_configs_are_valid() -> None:
    import yaml

    sample = load_service_config(ROOT / "analytics" / "scoring" / "service" / "sample.toml")
    assert sample.ingest is not None and sample.window_s == 60.0
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "docker-compose.yml").read_text())
    svc = compose["services"]["scoring"]
    assert svc["command"][:2] == ["analytics", "serve"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"] if v.startswith("./")}
    cfg = load_service_config(ROOT / "deploy" / "compose" / mounted[svc["command"][3]])
    assert cfg.ingest is not None and cfg.ingest.url == "http://ingest:8080"
    assert cfg.ingest.token_file == "/secrets/scoring.token"
    assert str(cfg.health.port) in svc["healthcheck"]["test"][-1]
    assert "scoring.token" in (ROOT / "deploy" / "compose" / "config" / "create-tokens.sh").read_text()
    unit = (ROOT / "deploy" / "scoring" / "zhizao-scoring.service").read_text()
    assert "ExecStart=/opt/zhizao/venv/bin/zhizao analytics serve --config /etc/zhizao/scoring.toml" in unit


def test_bad_configs_are_refused_with_the_key(tmp_path: Path) -> None:
    from zhizao.errors import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text('scopes = ["plant1/a b"]\nwindow_s = 0\n[ingest]\nurl = "ftp://x"\n'
                   '[storage]\nbackend = "duckdb"\n')
    with pytest.raises(ConfigError) as err:
        load_service_config(bad)
    text = str(err.value)
    assert "scopes" in text and "window_s" in text and "ingest.url" in text
    assert analytics_main(["serve", "--config", str(bad)]) == 2
    one = tmp_path / "one.toml"
    one.write_text('scopes = ["plant1"]\n[ingest]\nurl = "http://x"\n[storage]\nbackend = "duckdb"\n')
    with pytest.raises(ConfigError, match="exactly one of"):
        load_service_config(one)


def _batches(samples: list[Sample], seconds: int) -> list[list[Sample]]:
    """``samples`` cut into consecutive slices of ``seconds`` of data each."""
    t0 = min(s.ts for s in samples)
    out: dict[int, list[Sample]] = {}
    for s in samples:
        out.setdefault(int((s.ts - t0).total_seconds()) // seconds, []).append(s)
    return [out[k] for k in sorted(out)]


async def test_out_of_order_within_lateness_is_scored_and_late_rows_are_not(
        tmp_path: Path, ingest: str, registry: Path, fault_run: list[Sample]) -> None:
    """Data arrives while the service runs, 20 s slices with each pair swapped (out of order by up
    to 40 s, inside ``lateness_s`` = 60): every running second is scored exactly once. Then rows
    older than the cursor arrive: stored by ingest, not scored (their windows were closed)."""
    slices = _batches(fault_run, 20)
    for k in range(0, len(slices) - 1, 2):
        slices[k], slices[k + 1] = slices[k + 1], slices[k]
    svc = ScoringService(ServiceConfig.model_validate(config(tmp_path, ingest, registry, lateness_s=60.0,
                                                             quiet_close_s=10.0, interval_s=0.05)))
    task = asyncio.create_task(svc.run())
    try:
        for i, part in enumerate(slices):                        # one slice per request
            await asyncio.to_thread(post, ingest, part, f"sim-{i}")
        await eventually(lambda: done(svc, IMM, end_us(fault_run)), 60, "everything scored")
        before = await asyncio.to_thread(scores, ingest, IMM)
        late = [Sample(s.asset, s.signal, s.ts + timedelta(milliseconds=500), s.value, s.unit)
                for s in fault_run if str(s.asset) == IMM and s.signal == "vibration_rms"][:600]
        await asyncio.to_thread(post, ingest, late, "late")
        rounds = svc.rounds
        await eventually(lambda: svc.rounds >= rounds + 20, 20, "more rounds")
    finally:
        svc.stop()
        await task
    assert before[0] == running_seconds(fault_run, IMM)
    assert await asyncio.to_thread(scores, ingest, IMM) == before   # late rows: no new or changed score


async def test_undelivered_events_are_kept_and_redelivered(
        tmp_path: Path, ingest: str, registry: Path, fault_run: list[Sample], mosquitto: Mosquitto) -> None:
    """The MQTT broker is down while the episode happens: its updates stay pending (persisted) and
    reach the broker, with the same id, once it is back — while ingest got them right away."""
    mosquitto.stop()
    post(ingest, fault_run)
    sinks = {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port}, "max_attempts": 1}
    svc = ScoringService(ServiceConfig.model_validate(config(tmp_path, ingest, registry, redeliver_s=0.3,
                                                             sinks=sinks)))
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: done(svc, IMM, end_us(fault_run)), 60, "imm-1 scored")
        st = svc.workers[IMM].state
        assert st is not None and st.pending, "the MQTT sink was down: updates must be pending"
        (stored,) = await asyncio.to_thread(events, ingest, IMM)
        assert set(st.pending) == {stored["id"]}
        health = {m["machine"]: m for m in svc.health()[1]["machines"]}
        assert health[IMM]["pending_events"] == 1
        mosquitto.start()
        await eventually(lambda: not svc.workers[IMM].state.pending, 30, "redelivered")  # type: ignore[union-attr]
    finally:
        svc.stop()
        await task
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:   # retained: the episode's last state
        await c.subscribe(alert_topic(IMM) + "/#", qos=1)
        async for msg in c.messages:
            got = Event.model_validate_json(bytes(msg.payload))
            break
    assert got.id == stored["id"] and got.state.value == "resolved"


async def test_store_mode_on_influxdb(tmp_path: Path, registry: Path, fault_run: list[Sample],
                                      influxdb: InfluxDB) -> None:
    """Production's store: the service reads and writes a real influxd directly (``[storage]``,
    like the KPI feed); scores are idempotent there too and events are upserted into it."""
    storage = {"backend": "influxdb", "influxdb": {"url": influxdb.url, "database": influxdb.database}}
    await _store_mode(storage, tmp_path, registry, fault_run, timeout_s=90)


async def _store_mode(storage: dict[str, Any], tmp_path: Path, registry: Path, fault_run: list[Sample],
                      *, timeout_s: float) -> None:
    """The fault run stored in ``storage``, scored by a service opening that store itself: every
    running second of imm-1 scored once, one event with its top contributor, both in the store."""
    from ingest.settings import StorageSettings
    from ingest.storage.base import EventQuery, SeriesQuery
    from ingest.storage.registry import open_store

    settings = StorageSettings.model_validate(storage)
    async with open_store(settings) as store:
        await store.write(SampleFrame.from_samples(fault_run))
    doc = config(tmp_path, "http://unused", registry)
    del doc["ingest"]
    doc["storage"] = storage
    svc = ScoringService(ServiceConfig.model_validate(doc))
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: done(svc, IMM, end_us(fault_run)), timeout_s, "imm-1 scored")
    finally:
        svc.stop()
        await task
    sc = _scenario()
    async with open_store(settings) as store:
        (series,) = await store.query(SeriesQuery(asset=IMM, start=sc.start, signals=("anomaly_score",),
                                                  end=sc.start + timedelta(hours=2)))
        evs = await store.query_events(EventQuery(asset=IMM))
    assert series.ts_us.tolist() == running_seconds(fault_run, IMM)
    assert len(evs) == 1 and evs[0].contributors[0].signal == "vibration_rms"


async def test_a_step_redone_after_its_writes_stores_nothing_twice(
        tmp_path: Path, ingest: str, registry: Path, fault_run: list[Sample]) -> None:
    """The worst moment to crash: a step's scores and events are out, its state is not saved.
    Saving fails on every third step here (a full disk): each such step is redone from the saved
    state — ingest answers 'duplicate' for its windows, the events keep their ids."""
    from analytics.scoring.service.state import StateStore

    class FlakyDisk(StateStore):
        calls = 0

        def save(self, state: MachineState) -> None:
            FlakyDisk.calls += 1
            if FlakyDisk.calls % 3 == 0:
                raise OSError(28, "No space left on device")
            super().save(state)

    from prometheus_client import REGISTRY

    def duplicates() -> float:
        v = REGISTRY.get_sample_value("zhizao_scoring_duplicate_batches_total", {"machine": IMM})
        return v or 0.0

    post(ingest, fault_run)
    before = duplicates()
    svc = ScoringService(ServiceConfig.model_validate(config(tmp_path, ingest, registry,
                                                             max_windows_per_round=5)))
    svc.states = FlakyDisk(svc.cfg.state_dir)
    await run_until(svc, lambda: done(svc, IMM, end_us(fault_run)), 60, "imm-1 scored")
    assert svc.failures.get("state", 0) >= 3 and "No space left" in svc.last_error
    assert duplicates() - before >= 3                           # redone windows: ingest had them
    ts, _ = scores(ingest, IMM)
    assert ts == running_seconds(fault_run, IMM)
    (ev,) = events(ingest, IMM)
    assert ev["state"] == "resolved" and ev["contributors"][0]["signal"] == "vibration_rms"


COMP = f"{LINE}/comp-1"
LEAK_AT_S, LEAK_S = 1500, 1500


async def test_energy_model_scores_every_state_and_flags_an_air_leak_live(
        tmp_path: Path, ingest: str, registry: Path) -> None:
    """The energy model served live, as ``eval sim`` scores it: trained with ``train --model
    energy`` on the fault-free reference, scored by the service beside the health models on every
    row (idle, off and running), written as ``anomaly_score.energy``; the compressed-air leak —
    which shows only in power — raises an ``energy-model-…`` event blaming ``power_kw``."""
    sc = _scenario()
    ref = sc.model_copy(update={"faults": []})
    async with DuckDBStore(tmp_path / "ref.duckdb") as s:
        await s.write(SampleFrame.from_samples(list(generate(ref, 2, 3600))))
    argv = ["train", "--scope", COMP, "--model", "energy", "--signals", "air_flow", "--from",
            sc.start.isoformat(), "--to", (sc.start + timedelta(hours=1)).isoformat(),
            "--duckdb", str(tmp_path / "ref.duckdb"), "--registry", str(registry)]
    assert await asyncio.to_thread(analytics_main, argv) == 0
    reg = ModelRegistry(registry)
    assert f"{COMP}#energy" in reg.scopes() and COMP not in reg.scopes()
    meta = reg.metadata(f"{COMP}#energy")
    assert meta.detector == "expected_power"
    assert meta.columns == ["state=running", "state=idle", "state=setup", "state=down", "state=off",
                            "air_flow", "power_kw"]

    leak = FaultConfig(machine="line1/comp-1", kind="air_leak", at=LEAK_AT_S, duration_s=LEAK_S)
    run = list(generate(sc.model_copy(update={"faults": [leak]}), 1, 3600))
    post(ingest, run)
    cfg = ServiceConfig.model_validate(config(tmp_path, ingest, registry, models=["health", "energy"],
                                              clear_after_s=300.0))
    svc = ScoringService(cfg)
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: done(svc, f"{COMP}#energy", end_us(run)), 90, "comp-1's energy scored")
        await eventually(lambda: done(svc, IMM, end_us(run)), 60, "imm-1's health scored")
    finally:
        svc.stop()
        await task
    _, doc = svc.health()
    machines = {m["machine"]: m for m in doc["machines"]}
    assert machines[f"{COMP}#energy"]["status"] == "ok" and machines[f"{COMP}#energy"]["model"] == "v0001"
    assert machines[COMP]["status"] == "no_model"                  # no health model for comp-1: that one only
    assert machines[IMM]["status"] == "ok" and machines[f"{IMM}#energy"]["status"] == "no_model"

    ts, values = scores(ingest, COMP, "anomaly_score.energy")
    ticks = sorted({int(s.ts.timestamp() * 1e6) for s in run if str(s.asset) == COMP})
    running = set(running_seconds(run, COMP))
    assert len(set(ts)) == len(ts) and all(0 <= v < 1 for v in values)
    assert set(ts) <= set(ticks) and len(ts) >= 0.95 * len(ticks)  # every state, not only running
    assert len(set(ts) - running) > 300                              # idle, and off in the break
    assert scores(ingest, COMP) == ([], [])                          # no health series without a model
    assert scores(ingest, IMM)[0] == running_seconds(run, IMM)      # health scoring unchanged beside it

    evs = [Event.model_validate(e) for e in events(ingest, COMP)]
    assert evs and all(e.rule == "energy-model-v0001" for e in evs)
    leak_start = sc.start + timedelta(seconds=LEAK_AT_S)
    leak_end = leak_start + timedelta(seconds=LEAK_S)
    assert all(leak_start <= e.start < leak_end for e in evs), evs  # the leak, and no false alarm
    assert evs[0].contributors[0].signal == "power_kw"


# ---- event delivery and the supervisor loop (review 48) -----------------------------------------

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


async def run_until(svc: ScoringService, cond: Callable[[], bool], seconds: float, what: str) -> None:
    """Run ``svc`` until ``cond()`` holds (:func:`eventually`: ``AssertionError`` after ``seconds``),
    then stop it."""
    task = asyncio.create_task(svc.run())
    try:
        await eventually(cond, seconds, what)
    finally:
        svc.stop()
        await task


def _with_open_episode(w: MachineWorker, now: float) -> Event:
    """Give worker ``w`` an open episode whose update is pending (its sink was down), the cursor at
    its data's end (no window to score: the next step is the redelivery path)."""
    assert w.scorer is not None
    w.scorer.tracker.observe(w.asset, T0, True, 0.9)
    (opened,) = w.scorer.tracker.observe(w.asset, T0 + timedelta(seconds=130), True, 0.9)
    cursor = int((T0 + timedelta(seconds=180)).timestamp() * 1e6)
    w.state = MachineState(asset=w.asset, version="v0001", cursor_us=cursor, scorer=w.scorer.snapshot(),
                           pending={opened.id: opened})
    w.watermark_us, w._wm_changed_at = cursor, now
    return opened


async def test_service_keeps_the_episode_pending_for_a_dead_first_webhook(
        tmp_path: Path, ingest: str, registry: Path, fault_run: list[Sample],
        webhook: WebhookReceiver) -> None:
    """webhook[0] is down for the whole run, webhook[1] up: the episode stays pending (redelivered
    to webhook[0] when it is back) — not reported delivered because the other webhook has it."""
    post(ingest, fault_run)
    dead = f"http://127.0.0.1:{free_port()}/hook"
    sinks = {"webhooks": [{"url": dead}, {"url": webhook.url}], "max_attempts": 1}
    svc = ScoringService(ServiceConfig.model_validate(config(tmp_path, ingest, registry, sinks=sinks)))
    await run_until(svc, lambda: done(svc, IMM, end_us(fault_run)), 90, "imm-1 scored")
    (stored,) = await asyncio.to_thread(events, ingest, IMM)
    assert {e["id"] for d in webhook.received for e in d.json()["events"]} == {stored["id"]}
    st = svc.workers[IMM].state
    assert st is not None
    assert set(st.pending) == {stored["id"]}, "webhook[0] never got the episode, yet nothing is pending"


async def test_one_machines_persistent_5xx_does_not_stop_the_other_machines(
        tmp_path: Path, ingest: str, registry: Path, fault_run: list[Sample]) -> None:
    """README: 'one machine's failure never stops the others'. ingest answers 5xx to every read of
    imm-1: pack-1 (sorted after it) is scored all the same, and imm-1 reports the failure as its
    status in /healthz (not ``ok``)."""

    class OneMachineFails(IngestApiIO):
        async def query(self, q: SeriesQuery) -> list[Series]:
            if q.asset == IMM:
                raise StoreUnavailable(f"ingest: HTTP 500 for {q.asset}")
            return await super().query(q)

    post(ingest, fault_run)
    cfg = ServiceConfig.model_validate(config(tmp_path, ingest, registry))
    assert cfg.ingest is not None
    svc = ScoringService(cfg, io=OneMachineFails(cfg.ingest))
    await run_until(svc, lambda: done(svc, PACK, end_us(fault_run)), 45, "pack-1 scored although imm-1 fails")
    machines = {m["machine"]: m for m in svc.health()[1]["machines"]}
    assert machines[PACK]["status"] == "ok"
    assert machines[IMM]["status"] == "store_unavailable" and "HTTP 500" in machines[IMM]["problem"]
    assert svc.failures["store_unavailable"] >= 1


async def test_a_refused_catalogue_request_does_not_end_the_service(
        tmp_path: Path, ingest: str, registry: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Module docstring: 'Failures never end the loop'. A 4xx on the catalogue (a revoked token:
    401/403; here a 404, a wrong URL prefix) is logged with what to check, counted as
    ``rejected`` and retried with backoff: the service keeps running."""
    cfg = ServiceConfig.model_validate(config(tmp_path, ingest + "/wrong-prefix", registry))
    svc = ScoringService(cfg)
    task = asyncio.create_task(svc.run())
    await asyncio.sleep(2.0)
    try:
        assert not task.done(), f"the scoring service ended: {task.exception()!r}"
    finally:
        svc.stop()
        if not task.done():
            await task
    assert svc.failures.get("rejected", 0) >= 1 and svc.last_ok is None
    assert any("catalogue" in r.message and "HTTP 404" in r.message and "token" in r.message
               for r in caplog.records), [r.message for r in caplog.records]


async def test_rollback_right_after_a_promotion_keeps_the_old_episodes_resolve(
        tmp_path: Path, registry: Path) -> None:
    """v0001 has an open episode; v0002 is promoted (the episode's resolve waits in
    ``_pending_close``: a sink was down, the last redelivery was 10 s ago, so it is not due yet),
    then rolled back at the next registry poll: v0001's episode is still resolved at the sinks."""
    cfg = ServiceConfig.model_validate(config(tmp_path, "http://127.0.0.1:9", registry))
    reg = ModelRegistry(registry)
    w = MachineWorker(IMM, cfg, reg, StateStore(tmp_path / "state"))
    w.refresh_model()
    assert w.version == "v0001" and w.scorer is not None and w.model is not None
    now = time.time()
    opened = _with_open_episode(w, now)
    cursor = w.watermark_us
    assert cursor is not None
    d = registry / IMM.replace("/", "__")          # a second version (same artifact), promoted
    shutil.copytree(d / "v0001", d / "v0002")
    meta = json.loads((d / "v0002" / "metadata.json").read_text())
    meta["version"] = "v0002"
    (d / "v0002" / "metadata.json").write_text(json.dumps(meta))
    reg.promote(IMM, "v0002")
    w.refresh_model()
    assert w.version == "v0002"
    w._redelivered_at = now - 10            # pending redelivered 10 s ago: the next one is not due
    seen = {c: cursor for c in w.model.columns}
    await w.step(IngestApiIO.__new__(IngestApiIO), None, seen, now)
    reg.rollback(IMM)                       # "wrong model": rolled back at the next poll
    w.refresh_model()
    assert w.version == "v0001"
    sink = ListSink()
    async with EventEmitter([sink], max_attempts=1) as emitter:
        w._redelivered_at = 0.0             # due now (no new window: the redelivery path)
        w._wm_changed_at = now + 60
        await w.step(IngestApiIO.__new__(IngestApiIO), emitter, seen, now + 60)
    states = {e.id: e.state for e in sink.events}
    assert states.get(opened.id) is EventState.RESOLVED, f"v0001's episode is never resolved: {states}"


async def test_a_hanging_webhook_does_not_delay_other_machines_alerts(tmp_path: Path, registry: Path) -> None:
    """events/README: 'one failing sink never blocks the others'. A webhook that accepts
    connections and never answers must not hold every machine's step for its retries
    (``max_attempts`` × ``timeout_s`` + backoff) before the next machine's alert reaches even the
    healthy sink; the hanging webhook's updates stay pending (redelivered later)."""
    import socket

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)                           # the handshake completes; nothing is ever answered
    hook = f"http://127.0.0.1:{hole.getsockname()[1]}/hook"
    cfg = ServiceConfig.model_validate(config(tmp_path, "http://127.0.0.1:9", registry))
    reg = ModelRegistry(registry)
    svc = ScoringService(cfg)
    now = time.time()
    seen: dict[str, dict[str, int]] = {}
    for asset in (IMM, PACK):
        w = MachineWorker(asset, cfg, reg, svc.states)
        w.refresh_model()
        assert w.model is not None
        _with_open_episode(w, now)
        assert w.state is not None
        seen[asset] = {c: w.state.cursor_us for c in w.model.columns}
        svc.workers[asset] = w
    healthy = ListSink()
    got_at: dict[str, float] = {}
    send = healthy.send

    async def timed(events: Sequence[Event]) -> None:
        await send(events)
        for e in events:
            got_at.setdefault(e.asset, time.monotonic())

    healthy.send = timed  # type: ignore[method-assign]

    async def catalogue() -> dict[str, dict[str, int]]:
        return seen

    svc._catalogue = catalogue  # type: ignore[method-assign]
    svc._last_poll = now
    try:
        async with EventEmitter([healthy, WebhookSink(hook, timeout_s=1.0)]) as emitter:
            t0 = time.monotonic()
            await svc.round(emitter, now)
    finally:
        hole.close()
    assert PACK in got_at
    delay = got_at[PACK] - t0
    assert delay < 2.0, f"pack-1's alert reached the healthy sink {delay:.1f} s late (imm-1's webhook)"
    for asset in (IMM, PACK):                 # not delivered to the hanging webhook: still pending
        st = svc.workers[asset].state
        assert st is not None and len(st.pending) == 1
