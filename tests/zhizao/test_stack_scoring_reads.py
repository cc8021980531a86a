"""The one-box scorer (:mod:`zhizao.stack.analytics`) against the three findings the scoring service
fixed in commit 7fcfeb7, on the stack's own ingest (uvicorn in this event loop, DuckDB) fed over
HTTP as the edge agent feeds it, scored by the real :class:`LiveAnalytics` rounds:

* A8, a model signal reported only on change: the service stalled (its watermark is the slowest
  signal's last report). The one-box has no watermark — a round scores every row up to the
  line's clock — so it never stalled inside a run (shown); but its first read went back only
  five minutes, so a value (or ``state``) reported before that was never found: nothing scored
  at all, or every row scored as if the machine published no state (fixed: read back).
* Data stamped ahead of the clock: the service's watermark moved and made later data late. The
  one-box reads only up to the line's clock, so such data moves nothing (shown).
* A late ``state``: the one-box re-reads five minutes behind its last row, so a report up to
  that late was always applied; one later than that was never read and the stale state applied
  to every later row (fixed: read back, logged and counted).

And with every signal periodic (the demo's line) the scores are the model's and no extra read is
made for the process signals.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from analytics.scoring import AnomalyModel, ModelSpec
from analytics.scoring.live import MachineScorer
from ingest.settings import Settings
from ingest.storage.base import SeriesQuery, Store
from zhizao import signals as sig
from zhizao.model import AssetPath, Batch, Sample
from zhizao.net import free_port
from zhizao.plant import PlantConfig
from zhizao.stack.analytics import LiveAnalytics
from zhizao.stack.ingest import IngestServer
from zhizao.wire import encode_batch

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
M = AssetPath("plant", "a1", "line1", "cnc-1")
US = 1_000_000
LOG = "zhizao.stack.analytics"


def _plant() -> PlantConfig:
    shift = {"name": "a", "start": "06:00", "end": "14:00"}
    return PlantConfig.model_validate({"calendar": {"shifts": [shift]}})


@contextlib.asynccontextmanager
async def one_box(tmp_path: Path) -> AsyncIterator[IngestServer]:
    """The stack's ingest (KPI API and dashboard mounted) on a DuckDB file, as ``Line`` starts it."""
    settings = Settings.model_validate({
        "host": "127.0.0.1", "port": free_port(),
        "storage": {"backend": "duckdb", "duckdb": {"path": str(tmp_path / "zhizao.duckdb")}},
        "auth": {"enabled": False, "tokens_file": str(tmp_path / "tokens.json")}, "log_level": "warning"})
    async with IngestServer(settings, _plant()) as ingest:
        yield ingest


async def post(url: str, samples: Sequence[Sample]) -> None:
    """``samples`` as an agent posts them (batches of 5,000, each with a new id)."""
    async with httpx.AsyncClient(timeout=60) as c:
        for i in range(0, len(samples), 5000):
            batch = Batch("agent", f"b-{time.monotonic_ns()}-{i}", i // 5000, tuple(samples[i:i + 5000]))
            r = await c.post(f"{url}/api/v1/batches", content=encode_batch(batch),
                             headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.text


def values(d: int, seed: int) -> np.ndarray:
    """``d`` signals' values for every second of two hours from T0 (the same whatever is sliced)."""
    out: np.ndarray = 1.0 + 0.05 * np.random.default_rng(seed).standard_normal((7200, d))
    return out


def periodic(signals: Sequence[str], start_s: int, n: int, seed: int = 1) -> list[Sample]:
    """``signals`` every second over ``[T0 + start_s, T0 + start_s + n)``."""
    X = values(len(signals), seed)
    return [Sample(M, s, T0 + timedelta(seconds=k), float(X[k, j]))
            for k in range(start_s, start_s + n) for j, s in enumerate(signals)]


def one(signal: str, at_s: float, value: float | str) -> Sample:
    return Sample(M, signal, T0 + timedelta(seconds=at_s), value)


def model(columns: list[str]) -> AnomalyModel:
    rng = np.random.default_rng(9)
    train = np.column_stack([1.0 + 0.05 * rng.standard_normal(900) if c != "setpoint"
                             else 42.0 + 2.0 * rng.standard_normal(900) for c in columns])
    return AnomalyModel(ModelSpec()).fit(train, columns=columns)


def offline(m: AnomalyModel, ts_s: Sequence[int], X: np.ndarray,
            running: np.ndarray | None = None) -> list[float]:
    """The model's scores of rows ``X`` at seconds ``ts_s`` after T0 (``running``: which rows
    count), scored in one go."""
    ts = np.asarray([int(T0.timestamp()) * US + k * US for k in ts_s], dtype=np.int64)
    frame, _ = MachineScorer(str(M), m, rule="anomaly").process(ts, X, running)
    return [float(v) for v in frame.value if v is not None]


async def scored(store: Store) -> tuple[list[int], list[float]]:
    """The ``anomaly_score`` written: seconds after T0, values."""
    got = await store.query(SeriesQuery(str(M), T0 - timedelta(days=1), T0 + timedelta(days=1),
                                        (sig.ANOMALY_SCORE,)))
    if not got:
        return [], []
    return [round((t - T0).total_seconds()) for t in got[0].timestamps()], [float(v) for v in got[0].value]


async def rounds(live: LiveAnalytics, from_s: int, to_s: int, step_s: int = 60) -> None:
    """Rounds at line times ``T0 + from_s, + step_s, ... to_s`` (no lag: the data is posted first)."""
    for t in range(from_s, to_s + 1, step_s):
        await live.round(T0 + timedelta(seconds=t), lag=timedelta(0))
    assert live.stats.failures == 0, live.stats


def secs(a: int, b: int) -> list[int]:
    return list(range(a, b))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The one-box scorer's WARNINGs (a late report contradicting scored rows)."""
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == logging.WARNING]


# ---- A8: a model signal reported only on change ------------------------------------------------


async def test_a_setpoint_reported_only_on_change_never_holds_the_machine_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Fed minute by minute like a live line: ``setpoint`` is reported at T0 (42), then not for
    30 minutes (beyond the look-back and the service's ``hold_after_s``), then 80. Every round
    scores every row up to its time — the one-box has no watermark to stall — and the rows use 42,
    then 80 from its report on: exactly the model's scores of those rows. (Held on the old code too.)"""
    columns = ["vib", "temp", "setpoint"]
    m = model(columns)
    caplog.set_level(logging.WARNING, logger=LOG)
    async with one_box(tmp_path) as ingest:
        live = LiveAnalytics(ingest.store, _plant(), [str(M)], {str(M): m}, start=T0, lag_s=0)
        await post(ingest.url, [one(sig.STATE, 0, "running"), one("setpoint", 0, 42.0)])
        for minute in range(40):
            if minute == 30:
                await post(ingest.url, [one("setpoint", 1800, 80.0)])
            await post(ingest.url, periodic(["vib", "temp"], minute * 60, 60))
            await rounds(live, minute * 60 + 60, minute * 60 + 60)
            ts, _ = await scored(ingest.store)
            assert ts == secs(0, minute * 60 + 60), f"round {minute}: scored up to its time"
        ts, got = await scored(ingest.store)
    X = np.column_stack([values(2, 1)[:2400], np.where(np.arange(2400) < 1800, 42.0, 80.0)])
    assert got == pytest.approx(offline(m, ts, X), abs=1e-12)
    assert not warnings(caplog)


async def test_a_setpoint_and_state_reported_before_the_run_are_read_back(tmp_path: Path) -> None:
    """``setpoint`` (42) and ``state`` (running) were reported an hour before the run starts and
    not since. The first round read five minutes back only: ``setpoint`` was unknown in every row,
    so nothing was ever scored (old code: 0 rows). Now both are read back from the store and every
    second is scored with 42 — the model's scores of those rows."""
    columns = ["vib", "temp", "setpoint"]
    m = model(columns)
    async with one_box(tmp_path) as ingest:
        await post(ingest.url, [one("setpoint", -3600, 42.0), one(sig.STATE, -3600, "running"),
                                *periodic(["vib", "temp"], 0, 1200)])
        live = LiveAnalytics(ingest.store, _plant(), [str(M)], {str(M): m}, start=T0, lag_s=0)
        await rounds(live, 120, 1200, step_s=120)
        ts, got = await scored(ingest.store)
    assert ts == secs(0, 1200)
    X = np.column_stack([values(2, 1)[:1200], np.full(1200, 42.0)])
    assert got == pytest.approx(offline(m, ts, X), abs=1e-12)


async def test_a_state_reported_before_the_run_keeps_an_idle_machine_unscored(tmp_path: Path) -> None:
    """``state = idle`` was reported an hour before the run. The first round did not see it and
    scored every row as if the machine published no state (old code: all 1,200 idle seconds).
    Now the machine is idle — nothing scored — until ``running`` is reported, then scored."""
    m = model(["vib", "temp"])
    async with one_box(tmp_path) as ingest:
        await post(ingest.url, [one(sig.STATE, -3600, "idle"), *periodic(["vib", "temp"], 0, 1200)])
        live = LiveAnalytics(ingest.store, _plant(), [str(M)], {str(M): m}, start=T0, lag_s=0)
        await rounds(live, 120, 1200, step_s=120)
        assert (await scored(ingest.store))[0] == []
        await post(ingest.url, [one(sig.STATE, 1200, "running"), *periodic(["vib", "temp"], 1200, 600)])
        await rounds(live, 1320, 1800, step_s=120)
        ts, _ = await scored(ingest.store)
    assert ts == secs(1200, 1800)


# ---- the machine state arriving after the process signals ---------------------------------------


@contextlib.asynccontextmanager
async def running_20_minutes(tmp_path: Path) -> AsyncIterator[tuple[IngestServer, LiveAnalytics]]:
    """The one-box with ``state = running`` at T0 and ``vib``, ``temp`` every second for 20
    minutes, scored by a round every minute (every second scored)."""
    async with one_box(tmp_path) as ingest:
        live = LiveAnalytics(ingest.store, _plant(), [str(M)], {str(M): model(["vib", "temp"])}, start=T0,
                             lag_s=0)
        await post(ingest.url, [one(sig.STATE, 0, "running"), *periodic(["vib", "temp"], 0, 1200)])
        await rounds(live, 60, 1200)
        assert (await scored(ingest.store))[0] == secs(0, 1200)
        yield ingest, live


async def test_a_state_report_later_than_the_look_back_is_carried_from_then_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Running from T0; 20 minutes scored; *then* ``state = idle`` stamped T0+10 min arrives (ten
    minutes behind the last scored row, beyond the five-minute look-back). The old code never read
    it: the machine stayed ``running`` for every later row (old code: 2,400 rows scored). Now the
    rows already scored keep their scores (late data), the rows after them are idle (not scored),
    and the contradiction is logged once and counted; ``running`` again is scored again."""
    caplog.set_level(logging.WARNING, logger=LOG)
    async with running_20_minutes(tmp_path) as (ingest, live):
        before, scores_before = await scored(ingest.store)
        await post(ingest.url, [one(sig.STATE, 600, "idle")])                 # late by ten minutes
        await post(ingest.url, periodic(["vib", "temp"], 1200, 1200))
        await rounds(live, 1260, 2400)
        assert (await scored(ingest.store)) == (before, scores_before)  # idle: none more, none revised
        await post(ingest.url, [one(sig.STATE, 2400, "running"), *periodic(["vib", "temp"], 2400, 300)])
        await rounds(live, 2460, 2700)
        ts, _ = await scored(ingest.store)
    assert ts == secs(0, 1200) + secs(2400, 2700)
    assert live.stats.late_changes == 1
    warned = warnings(caplog)
    assert len(warned) == 1, warned
    assert "'idle'" in warned[0] and "'running'" in warned[0] and "2026-11-23T08:10:00Z" in warned[0]


async def test_a_state_report_late_within_the_look_back_was_always_read_with_the_rows(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``state = idle`` stamped two minutes behind the last scored row: the round's five-minute
    look-back reads it with the rows, so the rows after it are idle — on the old code too. No
    read-back, nothing logged."""
    caplog.set_level(logging.WARNING, logger=LOG)
    async with running_20_minutes(tmp_path) as (ingest, live):
        await post(ingest.url, [one(sig.STATE, 1080, "idle"), *periodic(["vib", "temp"], 1200, 600)])
        await rounds(live, 1260, 1800)
        ts, _ = await scored(ingest.store)
    assert ts == secs(0, 1200)
    assert not warnings(caplog)


# ---- data stamped ahead of the clock --------------------------------------------------------------


async def test_data_stamped_ahead_of_the_line_clock_moves_nothing(tmp_path: Path) -> None:
    """Ten minutes scored, then the device's clock jumps an hour ahead for one report of every
    signal, then is right again. The one-box reads rows only up to the line's clock: every second
    of the correct data is scored (none made late), the future row not — until the clock gets
    there, then it is scored too. (The same on the old code: a round never reads past its clock.)"""
    columns = ["vib", "temp"]
    m = model(columns)
    async with one_box(tmp_path) as ingest:
        live = LiveAnalytics(ingest.store, _plant(), [str(M)], {str(M): m}, start=T0, lag_s=0)
        await post(ingest.url, [one(sig.STATE, 0, "running"), *periodic(columns, 0, 600)])
        await rounds(live, 60, 600)
        await post(ingest.url, [one("vib", 4200, 1.0), one("temp", 4200, 1.0)])  # an hour ahead
        for minute in range(10, 20):
            await post(ingest.url, periodic(columns, minute * 60, 60))
            await rounds(live, minute * 60 + 60, minute * 60 + 60)
        ts, got = await scored(ingest.store)
        assert ts == secs(0, 1200)                                           # nothing late, nothing ahead
        assert got == pytest.approx(offline(m, ts, values(2, 1)[:1200]), abs=1e-12)
        await rounds(live, 4201, 4201)                                       # the clock is there
        ts, _ = await scored(ingest.store)
    assert ts == [*secs(0, 1200), 4200]


# ---- every signal periodic: as before ------------------------------------------------------------


class CountingStore:
    """The store, counting one-signal reads (the read-back's probes; a round's rows read every
    model signal and ``state`` at once) per signal."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.probes: Counter[str] = Counter()

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def query(self, q: SeriesQuery) -> object:
        if q.signals is not None and len(q.signals) == 1 and q.signals[0] != sig.ANOMALY_SCORE:
            self.probes[q.signals[0]] += 1
        return await self.store.query(q)


async def test_periodic_signals_score_as_before_with_no_read_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The demo's case: every model signal reports every second (``load`` posted a minute behind
    the others, as by a second connector; rounds every minute stay ``lag`` behind the line's clock
    as the demo's do), ``state`` on change, in order. The scores are the model's scores of the
    running rows — what the old code wrote (this test passes there too) — and no one-signal read
    is made for a process signal (each change of the state costs one small read, which finds
    nothing behind the rows read)."""
    columns = ["vib", "temp", "load"]
    m = model(columns)
    state = {0: "running", 900: "idle", 1200: "running"}
    lag = timedelta(seconds=150)
    caplog.set_level(logging.WARNING, logger=LOG)
    async with one_box(tmp_path) as ingest:
        store = CountingStore(ingest.store)
        live = LiveAnalytics(store, _plant(), [str(M)], {str(M): m}, start=T0, lag_s=0)  # type: ignore[arg-type]
        for minute in range(30):
            at = minute * 60
            news = [one(sig.STATE, t, s) for t, s in state.items() if at <= t < at + 60]
            await post(ingest.url, [*news, *periodic(["vib", "temp"], at, 60)])
            if minute:
                await post(ingest.url, periodic(["load"], at - 60, 60, seed=2))
            await live.round(T0 + timedelta(seconds=at + 60), lag=lag)
        await post(ingest.url, periodic(["load"], 1740, 60, seed=2))
        await live.final_round(T0 + timedelta(seconds=1800))
        assert live.stats.failures == 0
        ts, got = await scored(ingest.store)
    running = np.array([not 900 <= k < 1200 for k in range(1800)])
    assert ts == np.flatnonzero(running).tolist()
    X = np.column_stack([values(2, 1)[:1800], values(1, 2)[:1800]])
    assert got == pytest.approx(offline(m, secs(0, 1800), X, running), abs=1e-12)
    assert set(store.probes) <= {sig.STATE} and store.probes[sig.STATE] <= len(state)
    assert not warnings(caplog)
