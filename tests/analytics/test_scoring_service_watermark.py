"""The scoring service's watermark and carried values (review findings A8, A2 and A3), against
real components: ingest on uvicorn with DuckDB, models in a real registry, the service in this
process (restarted on its state folder where restarts matter).

* A8 — a model signal reported only on change (a setpoint written once) used to stall its
  machine: the watermark was the slowest signal's last report. It is now *held* once quiet for
  ``hold_after_s`` while the other signals advance — its last value is carried, never beyond the
  others' newest data; the hold survives a restart; a real value arriving later with an older
  timestamp is stored, not scored (late data), logged and counted, and carried from the cursor on.
  With every signal periodic, nothing is held and the scores are the model's on the rows.
* A2 — data stamped ahead of the service's clock no longer moves the watermark (so later
  correct data is not made late): the signal's progress is its data up to the horizon.
* A3 — ``state`` arriving after the process signals: a step read only from the cursor, so a
  state report stamped behind it was never read and every later row kept the stale state (here:
  idle, not scored); a state older than ``lookback_s`` was not read at all on the first step
  (rows scored as if the machine published no state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from analytics.registry import ModelRegistry
from analytics.scoring import AnomalyModel
from analytics.scoring.live import MachineScorer
from analytics.scoring.service import ScoringService, ServiceConfig
from analytics.scoring.service.source import IngestApiIO
from ingest.storage.base import Series, SeriesQuery
from ingest.testing import run_server, server_settings
from tests.analytics.conftest import normal_rows
from tests.support.waiting import eventually
from zhizao.model import AssetPath, Batch, Sample
from zhizao.wire import encode_batch

LINE = "plant9/a1/line1"
M = f"{LINE}/press-1"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)   # on the minute grid
US = 1_000_000
WINDOW_S, LATENESS_S = 60, 5
T0_US = int(T0.timestamp() * US)
MACHINE_LOG = "analytics.scoring.service.machine"


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "ingest").mkdir()
    with run_server(server_settings(tmp_path / "ingest")) as url:
        yield url


def _model(columns: list[str], seed: int = 0) -> AnomalyModel:
    return AnomalyModel().fit(normal_rows(900, len(columns), seed), columns=columns)


def _registry(tmp_path: Path, columns: list[str]) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "models")
    reg.save(M, _model(columns))
    return reg


def values(d: int, seed: int) -> np.ndarray:
    """The values of ``d`` signals for every second from T0 (an hour; the same whatever is sliced)."""
    out: np.ndarray = normal_rows(3600, d, seed)
    return out


def _periodic(signals: Sequence[str], start_s: int, n: int, seed: int = 1) -> list[Sample]:
    """``signals`` of machine M every second over ``[T0 + start_s, T0 + start_s + n)``."""
    X = values(len(signals), seed)[start_s:start_s + n]
    path = AssetPath.parse(M)
    return [Sample(path, s, T0 + timedelta(seconds=start_s + i), float(X[i, j]))
            for i in range(n) for j, s in enumerate(signals)]


def _one(signal: str, at_s: float, value: float | str) -> Sample:
    return Sample(AssetPath.parse(M), signal, T0 + timedelta(seconds=at_s), value)


def post(url: str, samples: list[Sample]) -> None:
    """Post ``samples`` as an agent would (one batch per 5,000, each id new)."""
    with httpx.Client(timeout=60) as c:
        for i in range(0, len(samples), 5000):
            batch = Batch("plc", f"b-{time.monotonic_ns()}-{i}", i // 5000, tuple(samples[i:i + 5000]))
            r = c.post(f"{url}/api/v1/batches", content=encode_batch(batch),
                       headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.text


def config(tmp_path: Path, url: str, **over: Any) -> ServiceConfig:
    doc: dict[str, Any] = {
        "scopes": [LINE], "registry": str(tmp_path / "models"), "state_dir": str(tmp_path / "state"),
        "interval_s": 0.1, "window_s": WINDOW_S, "lateness_s": LATENESS_S, "quiet_close_s": 3600.0,
        "hold_after_s": 1.0, "backfill_s": 7200.0, "registry_poll_s": 0.2, "ingest": {"url": url},
        "health": {"port": 0}}
    doc.update(over)
    return ServiceConfig.model_validate(doc)


def scores(url: str) -> tuple[list[int], list[float]]:
    r = httpx.get(f"{url}/api/v1/series", params={
        "asset": M, "signal": "anomaly_score", "epoch": "us", "start": "2026-11-22T00:00:00Z",
        "end": "2026-11-30T00:00:00Z"})
    series = r.json()["series"]
    return (series[0]["ts"], series[0]["values"]) if series else ([], [])


def cursor(svc: ScoringService) -> int:
    w = svc.workers.get(M)
    return -1 if w is None or w.state is None else w.state.cursor_us


def ticks(start_s: int, end_s: int) -> list[int]:
    return [T0_US + k * US for k in range(start_s, end_s)]


def closed(last_data_s: int) -> int:
    """µs end of the last window closed by data up to ``T0 + last_data_s`` (no quiet close)."""
    return T0_US + (last_data_s - LATENESS_S) // WINDOW_S * WINDOW_S * US


def machine_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == MACHINE_LOG and r.levelno == logging.WARNING]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def run_until(svc: ScoringService, cond: Callable[[], bool], seconds: float, what: str,
                    then: Callable[[], Any] | None = None) -> None:
    """Run ``svc`` until ``cond()`` holds (``AssertionError`` naming ``what`` after ``seconds``),
    then stop it."""
    task = asyncio.create_task(svc.run())
    try:
        await eventually(cond, seconds, what)
        if then is not None:
            await then()
    finally:
        svc.stop()
        await task


def offline(model: AnomalyModel, ts: list[int], X: np.ndarray) -> list[float]:
    """The model's scores of rows ``X`` at ``ts`` scored in one go (the service's rows, expected)."""
    frame, _ = MachineScorer(M, model).process(np.asarray(ts, dtype=np.int64), X)
    return [float(v) for v in frame.value if v is not None]


# ---- A8: sample-and-hold ----------------------------------------------------------------------


async def test_a_setpoint_reported_once_is_held_and_a_late_change_is_not_silently_contradicted(
        tmp_path: Path, ingest: str, caplog: pytest.LogCaptureFixture) -> None:
    """``setpoint`` is written once, at T0, and never again while ``vib`` and ``temp`` report
    every second. Before the fix nothing was scored (the watermark stayed at T0). Now: every row
    up to the last closed window is scored with setpoint 42 held — exactly the model's scores of
    those rows — and nothing beyond the others' data. A restart (with a long ``hold_after_s``)
    holds it again at once from the state file. Then setpoint 80, stamped behind the cursor,
    arrives: the scores written stay, the change is logged and counted, and the rows from the
    cursor on are scored with 80."""
    columns = ["vib", "temp", "setpoint"]
    reg = _registry(tmp_path, columns)
    model = reg.load(M)
    post(ingest, [*_periodic(["vib", "temp"], 0, 1200), _one("setpoint", 0, 42.0)])
    svc = ScoringService(config(tmp_path, ingest))
    first_end = closed(1199)
    await run_until(svc, lambda: cursor(svc) >= first_end, 30, "rows scored although setpoint is quiet")
    ts1, v1 = await asyncio.to_thread(scores, ingest)
    assert ts1 == ticks(0, (first_end - T0_US) // US)            # every row, none beyond the closed windows
    vt = values(2, 1)[:1200]
    X = np.column_stack([vt, np.full(1200, 42.0)])
    expected = offline(model, ticks(0, 1200), X)
    assert v1 == pytest.approx(expected[:len(ts1)], abs=1e-12)   # scored with the held value
    _, doc = svc.health()
    (mine,) = [m for m in doc["machines"] if m["machine"] == M]
    assert mine["held"] == {"setpoint": "2026-11-23T08:00:00Z"} and mine["status"] == "ok"
    assert metric("zhizao_scoring_held_signals", machine=M) == 1
    assert svc.workers[M].watermark_us == T0_US + 1199 * US      # the others' newest data, not beyond

    # restart with a hold of 10 minutes: held at once (the state file says so), not after 10 minutes
    post(ingest, _periodic(["vib", "temp"], 1200, 300))
    svc2 = ScoringService(config(tmp_path, ingest, hold_after_s=600.0))
    second_end = closed(1499)
    await run_until(svc2, lambda: cursor(svc2) >= second_end, 30, "the hold kept across a restart")

    # a real change of the setpoint, stamped before the cursor, arrives late; then more data
    caplog.set_level(logging.WARNING, logger=MACHINE_LOG)
    late_before = metric("zhizao_scoring_late_changes_total", machine=M, signal="setpoint")
    post(ingest, [_one("setpoint", 1000, 80.0), *_periodic(["vib", "temp"], 1500, 300)])
    svc3 = ScoringService(config(tmp_path, ingest))
    third_end = closed(1799)
    await run_until(svc3, lambda: cursor(svc3) >= third_end, 30, "scored after the late change")
    ts3, v3 = await asyncio.to_thread(scores, ingest)
    n3 = (third_end - T0_US) // US
    assert ts3 == ticks(0, n3) and ts3[:len(ts1)] == ts1 and v3[:len(v1)] == v1   # nothing revised
    vt = values(2, 1)[:1800]
    cut = (second_end - T0_US) // US                             # the cursor when 80 arrived
    X = np.column_stack([vt, np.where(np.arange(1800) < cut, 42.0, 80.0)])
    assert v3 == pytest.approx(offline(model, ticks(0, 1800), X)[:n3], abs=1e-12)
    assert metric("zhizao_scoring_late_changes_total", machine=M, signal="setpoint") == late_before + 1
    warned = [r.getMessage() for r in caplog.records
              if r.name == MACHINE_LOG and r.levelno == logging.WARNING and "setpoint" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "80.0" in warned[0] and "42.0" in warned[0] and "2026-11-23T08:16:40Z" in warned[0]


async def test_all_signals_periodic_nothing_is_held_and_scores_are_the_models(
        tmp_path: Path, ingest: str) -> None:
    """Equivalence: when every signal reports every second (a slow one posted a batch behind),
    no signal is held, no extra read is made, and the scores are the model's scores of the rows
    — what the service wrote before the fix."""
    columns = ["vib", "temp", "setpoint"]
    reg = _registry(tmp_path, columns)
    model = reg.load(M)

    class Counting(IngestApiIO):
        single = 0

        async def query(self, q: SeriesQuery) -> list[Series]:
            Counting.single += len(q.signals) == 1                # a probe (rows read all signals at once)
            return await super().query(q)

    cfg = config(tmp_path, ingest, hold_after_s=10.0)
    assert cfg.ingest is not None
    svc = ScoringService(cfg, io=Counting(cfg.ingest))
    held_seen: list[int] = []

    async def feed() -> None:
        for k in range(0, 900, 60):                               # live-like: a minute at a time
            post(ingest, _periodic(["vib", "temp"], k, 60))
            post(ingest, _periodic(["setpoint"], k, 60, seed=2))
            held_seen.append(len(svc.workers[M].held) if M in svc.workers else 0)
            await asyncio.sleep(0.3)

    task = asyncio.create_task(svc.run())
    try:
        await feed()
        await eventually(lambda: cursor(svc) >= closed(899), 30, "everything scored")
    finally:
        svc.stop()
        await task
    ts, got = await asyncio.to_thread(scores, ingest)
    assert ts == ticks(0, 840)
    X = np.column_stack([values(2, 1)[:840], values(1, 2)[:840]])
    assert got == pytest.approx(offline(model, ts, X), abs=1e-12)
    assert held_seen and not any(held_seen) and not svc.workers[M].held
    assert Counting.single == 0


# ---- A2: a device clock ahead --------------------------------------------------------------------


async def test_data_stamped_ahead_of_the_clock_does_not_make_later_data_late(
        tmp_path: Path, ingest: str, caplog: pytest.LogCaptureFixture) -> None:
    """The device's clock jumps an hour ahead for one report of every signal, then is right again.
    Before the fix the watermark jumped to that hour and the correct data after it was late (never
    scored). Now it is not used: every second of correct data is scored, the future row is not
    (the cursor stays behind the horizon), one WARNING names the machine, the signals and how far
    ahead, and the metric counts it."""
    _registry(tmp_path, ["vib", "temp"])
    caplog.set_level(logging.INFO, logger=MACHINE_LOG)
    before = metric("zhizao_scoring_future_data_total", machine=M, signal="vib")
    post(ingest, _periodic(["vib", "temp"], 0, 600))
    svc = ScoringService(config(tmp_path, ingest, quiet_close_s=1.0, max_future_s=60.0))
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: cursor(svc) >= T0_US + 600 * US, 30, "the first part scored")
        ahead_s = time.time() - T0.timestamp() + 3600             # an hour ahead of this clock
        post(ingest, [_one("vib", ahead_s, 1.0), _one("temp", ahead_s, 1.0)])
        rounds = svc.rounds
        await eventually(lambda: svc.rounds >= rounds + 10, 20, "rounds with the future data")
        post(ingest, _periodic(["vib", "temp"], 600, 600))
        await eventually(lambda: cursor(svc) >= T0_US + 1200 * US, 30, "the correct data scored")
        rounds = svc.rounds
        await eventually(lambda: svc.rounds >= rounds + 10, 20, "more rounds")
        _, doc = svc.health()
    finally:
        svc.stop()
        await task
    ts, _ = await asyncio.to_thread(scores, ingest)
    assert ts == ticks(0, 1200)                                   # nothing late, the future row not scored
    assert cursor(svc) / US < time.time()
    (mine,) = [m for m in doc["machines"] if m["machine"] == M]
    assert set(mine["ahead_s"]) == {"temp", "vib"} and 3500 < mine["ahead_s"]["vib"] <= 3600
    assert metric("zhizao_scoring_future_data_total", machine=M, signal="vib") == before + 1
    assert 3500 < metric("zhizao_scoring_future_ahead_seconds", machine=M) <= 3600
    warned = machine_warnings(caplog)
    assert len(warned) == 1, warned
    assert M in warned[0] and "temp 3" in warned[0] and "vib 3" in warned[0] and "s ahead" in warned[0]


# ---- A3: the machine state arriving after the process signals ------------------------------------


async def test_state_arriving_after_the_process_signals_is_used_from_the_cursor_on(
        tmp_path: Path, ingest: str, caplog: pytest.LogCaptureFixture) -> None:
    """The machine is idle, then runs from T0+300: ten minutes of process data arrive, the windows
    close (idle carried: nothing scored — late data by the rules), *then* ``state = running`` for
    T0+300. Before the fix the report, stamped behind the cursor, was never read: every later row
    stayed idle and unscored. Now the rows from the cursor on are scored, and the late change is
    logged and counted."""
    _registry(tmp_path, ["vib", "temp"])
    caplog.set_level(logging.WARNING, logger=MACHINE_LOG)
    before = metric("zhizao_scoring_late_changes_total", machine=M, signal="state")
    post(ingest, [_one("state", 0, "idle"), *_periodic(["vib", "temp"], 0, 300)])
    svc = ScoringService(config(tmp_path, ingest))
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: cursor(svc) >= closed(299), 30, "the idle part closed")
        post(ingest, _periodic(["vib", "temp"], 300, 600))       # running, but its state comes later
        await eventually(lambda: cursor(svc) >= closed(899), 30, "the windows closed without the state")
        at_state = cursor(svc)
        post(ingest, [_one("state", 300, "running")])
        post(ingest, _periodic(["vib", "temp"], 900, 600))
        await eventually(lambda: cursor(svc) >= closed(1499), 30, "the rest scored")
    finally:
        svc.stop()
        await task
    ts, _ = await asyncio.to_thread(scores, ingest)
    assert ts == ticks((at_state - T0_US) // US, (closed(1499) - T0_US) // US)
    assert metric("zhizao_scoring_late_changes_total", machine=M, signal="state") == before + 1
    warned = machine_warnings(caplog)
    assert len(warned) == 1 and "'running'" in warned[0] and "'idle'" in warned[0], warned


async def test_a_state_reported_before_the_lookback_is_read_on_the_first_step(
        tmp_path: Path, ingest: str) -> None:
    """``state = idle`` was reported 20 minutes before the service starts (``backfill_s`` 0:
    it starts at the current window, reading ``lookback_s`` = 5 min back). Before the fix the
    first step saw no state and scored every row as if the machine published none; now the
    machine is idle (nothing scored) until ``running`` is reported, then scored."""
    _registry(tmp_path, ["vib", "temp"])
    post(ingest, [_one("state", 0, "idle"), *_periodic(["vib", "temp"], 0, 1200)])
    svc = ScoringService(config(tmp_path, ingest, backfill_s=0.0))
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: cursor(svc) == T0_US + 1140 * US, 30, "started at the current window")
        post(ingest, _periodic(["vib", "temp"], 1200, 300))
        await eventually(lambda: cursor(svc) >= closed(1499), 30, "idle windows closed")
        assert (await asyncio.to_thread(scores, ingest))[0] == []   # idle: not scored
        post(ingest, [_one("state", 1500, "running"), *_periodic(["vib", "temp"], 1500, 300)])
        await eventually(lambda: cursor(svc) >= closed(1799), 30, "running windows closed")
    finally:
        svc.stop()
        await task
    ts, _ = await asyncio.to_thread(scores, ingest)
    assert ts == ticks(1500, (closed(1799) - T0_US) // US)


# ---- the pieces: probes of one signal, state files of earlier versions ---------------------------


async def test_last_bucket_narrows_a_long_range_to_the_exact_bucket(ingest: str) -> None:
    """The future-stamp search covers days (wider buckets) and still finds the exact 1 s bucket of
    the last report before the horizon; a string signal gives its string; no data gives None."""
    from analytics.scoring.rows import last_bucket
    from analytics.scoring.service.config import IngestApiConfig

    post(ingest, [_one("vib", 100, 1.0), _one("vib", 12345.25, 7.0), _one("vib", 12345.75, 9.0),
                  _one("vib", 90000, 3.0), _one("state", 500, "setup")])
    async with IngestApiIO(IngestApiConfig(url=ingest)) as io:
        horizon = T0_US + 20000 * US
        got = await last_bucket(io, M, "vib", start_us=T0_US - 30 * 86400 * US, end_us=horizon, bucket_s=1.0)
        assert got == (T0_US + 12345 * US, 8.0)                   # the bucket's mean, as rows read it
        got = await last_bucket(io, M, "state", start_us=T0_US, end_us=horizon, bucket_s=1.0)
        assert got == (T0_US + 500 * US, "setup")
        assert await last_bucket(io, M, "vib", start_us=T0_US + 200 * US, end_us=T0_US + 300 * US,
                                 bucket_s=1.0) is None


def test_a_state_file_of_the_previous_version_loads(tmp_path: Path) -> None:
    """``seen`` and ``held`` were added to the state without a format change: a file written
    before them (pickled without those attributes) loads, reading them as None."""
    import pickle

    from analytics.scoring.service.state import MachineState, StateStore

    store = StateStore(tmp_path)
    old = MachineState(asset=M, version="v0001", cursor_us=T0_US, carry={"vib": 1.0}, carry_state="idle")
    del old.__dict__["seen"], old.__dict__["held"]
    store.path(M).write_bytes(pickle.dumps(old))
    loaded = store.load(M)
    assert loaded is not None and loaded.seen is None and loaded.held is None
    assert loaded.carry == {"vib": 1.0} and loaded.cursor_us == T0_US
