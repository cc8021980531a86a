"""Training from a real DuckDB store, then live scoring writing scores and events back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import numpy as np
import pytest

from analytics.cli import main
from analytics.events import EventEmitter
from analytics.registry import ModelRegistry
from analytics.scoring.live import MachineScorer, write_back
from analytics.training import load_history
from ingest.storage.base import SampleFrame, SeriesQuery
from ingest.storage.duckdb.store import DuckDBStore
from zhizao.events import Event, EventState

ASSET = "plant1/assembly/line1/press1"
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


class ListSink:
    """A real (in-process) event sink: keeps what it is sent."""

    name = "list"

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, events: Sequence[Event]) -> None:
        self.events += list(events)


def machine_frame(n: int, start: datetime, fault_from: int | None = None, seed: int = 0) -> SampleFrame:
    rng = np.random.default_rng(seed)
    frame = SampleFrame()
    for i in range(n):
        t = int((start + timedelta(seconds=i)).timestamp() * 1e6)
        state = "idle" if 200 <= i % 1000 < 260 else "running"
        load = rng.normal()
        vib = 2.0 + 0.1 * load + rng.normal(0, 0.02) + (0.0 if state == "running" else -1.5)
        temp = 60 + 0.5 * load + rng.normal(0, 0.1)
        if fault_from is not None and i >= fault_from:
            vib += 0.6
        values = (("vibration_rms", vib), ("motor_temp", temp), ("parts_total", i), ("state", state))
        for signal, value in values:
            frame.append_raw(ASSET, signal, t, value, unit=None, quality="good")
    return frame


@pytest.fixture
async def store(tmp_path: Path) -> DuckDBStore:
    async with DuckDBStore(tmp_path / "z.duckdb") as s:
        await s.write(machine_frame(3000, T0))
    return DuckDBStore(tmp_path / "z.duckdb")


async def test_history_keeps_process_signals_and_running_rows(store: DuckDBStore) -> None:
    async with store as s:
        h = await load_history(s, ASSET, T0, T0 + timedelta(hours=1))
        # named signals: the state is still read (until session 10 it was not: every row counted)
        named = await load_history(s, ASSET, T0, T0 + timedelta(hours=1), signals=["vibration_rms"])
    assert h.columns == ["motor_temp", "vibration_rms"]  # counters and state are not features
    assert len(h.ts_us) == 3000 and 0.9 < h.running.mean() < 0.96
    assert named.columns == ["vibration_rms"] and (named.running == h.running).all()


async def test_train_command_then_live_scoring_writes_back(store: DuckDBStore, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    rc = await _run_cli(["train", "--scope", ASSET, "--from", T0.isoformat(), "--to",
                         (T0 + timedelta(hours=1)).isoformat(), "--duckdb", str(tmp_path / "z.duckdb"),
                         "--registry", str(reg)])
    assert rc == 0
    meta = ModelRegistry(reg).metadata(ASSET)
    assert meta.columns == ["motor_temp", "vibration_rms"] and meta.validation["heldout_flag_rate"] < 0.01
    model = ModelRegistry(reg).load(ASSET, features=meta.features)

    live_start = T0 + timedelta(hours=2)
    new = machine_frame(1500, live_start, fault_from=900, seed=7)
    async with store as s:
        await s.write(new)
        h = await load_history(s, ASSET, live_start, live_start + timedelta(hours=1))
        scorer = MachineScorer(ASSET, model, rule=f"anomaly:{meta.version}", clear_after_s=30)
        sink = ListSink()
        async with EventEmitter([sink]) as emitter:
            for a in range(0, len(h.ts_us), 100):  # streaming, 100 rows at a time
                frame, events = scorer.process(h.ts_us[a:a + 100], h.values[a:a + 100], h.running[a:a + 100])
                await write_back(s, emitter, frame, events)
        scores = await s.query(SeriesQuery(asset=ASSET, start=live_start, end=live_start + timedelta(hours=1),
                                           signals=("anomaly_score",)))
    assert len(scores) == 1 and len(scores[0]) == int(h.running.sum())
    v = scores[0].value
    assert ((v >= 0) & (v < 1)).all()
    opened = [e for e in sink.events if e.state is EventState.OPEN]
    assert opened, "the vibration fault must open an anomaly episode"
    first = opened[0]
    fault_ts = live_start + timedelta(seconds=900)
    assert fault_ts <= first.start <= fault_ts + timedelta(seconds=30)
    assert first.contributors[0].signal == "vibration_rms"
    assert len({e.id for e in sink.events}) == 1  # one episode, no false alarm before the fault


async def test_energy_training_sees_every_state_and_names_what_is_missing(
        store: DuckDBStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``train --model energy``: every row (idle too), the state as one-hot columns, the power
    last, under scope ``<machine>#energy``; without load signals a command-line error naming
    ``--signals`` (exit 2), with a power signal the machine lacks a clear error (exit 1), nothing saved."""
    reg = tmp_path / "models"
    base = ["train", "--scope", ASSET, "--from", T0.isoformat(), "--to",
            (T0 + timedelta(hours=1)).isoformat(), "--duckdb", str(tmp_path / "z.duckdb"),
            "--registry", str(reg), "--model", "energy"]
    assert await _run_cli(base) == 2
    assert "--signals: the energy model needs its load signals" in capsys.readouterr().err
    capsys.readouterr()
    assert await _run_cli([*base, "--signals", "motor_temp", "--power-signal", "vibration_rms"]) == 0
    assert "warning: trained on 1 h of history" in capsys.readouterr().err  # the presets: 24-h references
    assert await _run_cli([*base, "--signals", "motor_temp", "--power-signal", "power_kw"]) == 1
    assert "power_kw" in capsys.readouterr().err
    registry = ModelRegistry(reg)
    assert registry.scopes() == [f"{ASSET}#energy"] and registry.versions(f"{ASSET}#energy") == ["v0001"]
    meta = registry.metadata(f"{ASSET}#energy")
    assert meta.columns == ["state=running", "state=idle", "state=setup", "state=down", "state=off",
                            "motor_temp", "vibration_rms"]
    assert meta.training.rows == int(3000 * 0.8)  # every row, idle ones too (health keeps running rows)
    model = registry.load(f"{ASSET}#energy")
    assert model.states == "all" and model.spec.detector == "expected_power"


async def _run_cli(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(main, argv)


def _train_args(tmp_path: Path, scope: str = ASSET, hours: float = 1.0) -> list[str]:
    return ["train", "--scope", scope, "--from", T0.isoformat(),
            "--to", (T0 + timedelta(hours=hours)).isoformat(), "--registry", str(tmp_path / "models")]


async def test_train_refuses_a_scope_that_is_not_one_machine(
        store: DuckDBStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line used to train one model on every machine's signals and make it active: exit 2 now,
    naming the expected form; nothing saved."""
    db = ["--duckdb", str(tmp_path / "z.duckdb")]
    for scope, kind in (("plant1/assembly/line1", "a line"), ("plant1", "a site")):
        assert await _run_cli([*_train_args(tmp_path, scope), *db]) == 2
        err = capsys.readouterr().err
        assert f"--scope: '{scope}' is {kind}" in err and "site/area/line/machine" in err
    assert ModelRegistry(tmp_path / "models").scopes() == []


async def test_train_never_creates_a_store_and_says_which_data_is_missing(
        store: DuckDBStore, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ingest's default store: ./zhizao.duckdb
    assert await _run_cli(_train_args(tmp_path)) == 2
    assert "name the store with --duckdb FILE or --ingest-config FILE" in capsys.readouterr().err
    assert await _run_cli([*_train_args(tmp_path), "--duckdb", "nowhere.duckdb"]) == 2
    assert "--duckdb: no DuckDB file 'nowhere.duckdb'" in capsys.readouterr().err
    assert not (tmp_path / "zhizao.duckdb").exists() and not (tmp_path / "nowhere.duckdb").exists()

    db = ["--duckdb", str(tmp_path / "z.duckdb")]
    assert await _run_cli([*_train_args(tmp_path, "plant1/assembly/line1/press9"), *db]) == 2
    err = capsys.readouterr().err
    assert f"no data of machine 'plant1/assembly/line1/press9' at all; machines it has: {ASSET}" in err
    later = ["train", "--scope", ASSET, "--from", "2026-02-01", "--to", "2026-02-02", *db,
             "--registry", str(tmp_path / "models")]
    assert await _run_cli(later) == 1
    err = capsys.readouterr().err
    assert ("no numeric process signal between 2026-02-01T00:00:00.000000Z and 2026-02-02T00:00:00.000000Z "
            "(its last sample in the store is at 2026-01-05T06:49:59") in err


async def test_train_prints_validation_readably_and_warns_when_it_flags_its_own_history(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with DuckDBStore(tmp_path / "z.duckdb") as s:
        await s.write(machine_frame(3000, T0))  # healthy
        # then an hour whose held-out rows (the last 20 %) are shifted
        await s.write(machine_frame(3000, T0 + timedelta(hours=2), fault_from=2500))
    db = ["--duckdb", str(tmp_path / "z.duckdb")]
    assert await _run_cli([*_train_args(tmp_path), *db]) == 0
    cap = capsys.readouterr()
    assert "validation heldout_rows = 564, heldout_flag_rate = 0\n" in cap.out and "{" not in cap.out
    assert "flags" not in cap.err
    shifted = ["train", "--scope", ASSET, "--from", (T0 + timedelta(hours=2)).isoformat(),
               "--to", (T0 + timedelta(hours=3)).isoformat(), *db, "--registry", str(tmp_path / "models")]
    assert await _run_cli(shifted) == 0  # warned, not refused
    cap = capsys.readouterr()
    meta = ModelRegistry(tmp_path / "models").metadata(ASSET, "v0002")
    rate = meta.validation["heldout_flag_rate"]
    assert rate > 0.2 and f"warning: the model flags {rate:.0%} of its own held-out" in cap.err
