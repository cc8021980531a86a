"""The one-box stack's live scoring on a real DuckDB store: signals and a state that stay quiet
for longer than the look-back are carried, so every running second is scored exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from analytics.scoring import AnomalyModel, ModelSpec
from ingest.storage.base import EventQuery, SampleFrame, SeriesQuery
from ingest.storage.duckdb.store import DuckDBStore
from zhizao import signals as sig
from zhizao.model import AssetPath, Sample
from zhizao.plant import PlantConfig
from zhizao.stack.analytics import LiveAnalytics

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
CI = Path(__file__).resolve().parents[1] / "e2e" / "scenarios" / "ci.yaml"
M = AssetPath("plant", "a1", "line1", "cnc-1")


def _samples() -> list[Sample]:
    """30 min: running for 20 min (state reported once), then idle; vibration every second,
    a coolant temperature reported once at the start and never again (a deadband)."""
    rng = np.random.default_rng(3)
    out = [Sample(M, sig.STATE, T0, "running"), Sample(M, "coolant_temp", T0, 21.0),
           Sample(M, sig.STATE, T0 + timedelta(minutes=20), "idle")]
    out += [Sample(M, "vibration_rms", T0 + timedelta(seconds=i), float(1.0 + 0.05 * rng.standard_normal()))
            for i in range(1800)]
    return out


def _health_model(rng: np.random.Generator) -> AnomalyModel:
    train = np.column_stack([1.0 + 0.05 * rng.standard_normal(600), np.full(600, 21.0)])
    return AnomalyModel(ModelSpec()).fit(train, columns=["vibration_rms", "coolant_temp"])


def _plant() -> PlantConfig:
    shift = {"name": "a", "start": "06:00", "end": "14:00"}
    return PlantConfig.model_validate({"calendar": {"shifts": [shift]}})


async def test_quiet_signals_and_state_are_carried_across_rounds(tmp_path: Path) -> None:
    model = _health_model(np.random.default_rng(1))
    async with DuckDBStore(tmp_path / "z.duckdb") as store:
        await store.write(SampleFrame.from_samples(_samples()))
        plant = _plant()
        live = LiveAnalytics(store, plant, [str(M)], {str(M): model}, start=T0, lag_s=0)
        for minute in range(2, 31, 2):  # rounds every 2 simulated minutes: the 5-minute look-back
            await live.round(T0 + timedelta(minutes=minute), lag=timedelta(0))  # is soon past the state
        assert live.stats.failures == 0, live.stats
        scores = await store.query(SeriesQuery(str(M), T0, T0 + timedelta(hours=1), (sig.ANOMALY_SCORE,)))
    stamps = scores[0].timestamps()
    assert len(stamps) == len(set(stamps)) == 20 * 60  # each running second once, none while idle
    assert stamps[0] == T0 and stamps[-1] == T0 + timedelta(minutes=20) - timedelta(seconds=1)


async def test_an_energy_model_scores_every_state_beside_the_health_model(tmp_path: Path) -> None:
    """Two models of one machine (scopes ``<machine>`` and ``<machine>#energy``): health scores the
    running seconds into ``anomaly_score``, energy every second — idle too — into
    ``anomaly_score.energy``; a power excess while idle opens an ``energy`` episode blaming power."""
    from analytics.scoring.context import design, state_columns
    from analytics.scoring.presets import energy

    rng = np.random.default_rng(2)
    states = np.array(["running"] * 900 + ["idle"] * 300, dtype=object)
    power = np.where(states == "running", 10.0, 2.0) + 0.1 * rng.standard_normal(len(states))
    columns = [*state_columns(), sig.POWER_KW]
    rows = design(columns, [sig.POWER_KW], power[:, None], states)
    emodel = AnomalyModel(energy(), states="all").fit(rows, columns=columns)
    health = _health_model(rng)
    samples = _samples()  # running 20 min, then idle 10 min
    # power: running 10 kW, idle 2 kW from minute 20, and 3 kW more than that from minute 25
    kw = [10.0 if i < 1200 else 2.0 + (3.0 if i >= 1500 else 0.0) for i in range(1800)]
    samples += [Sample(M, sig.POWER_KW, T0 + timedelta(seconds=i), float(v + 0.1 * rng.standard_normal()))
                for i, v in enumerate(kw)]
    async with DuckDBStore(tmp_path / "z.duckdb") as store:
        await store.write(SampleFrame.from_samples(samples))
        plant = _plant()
        models = {str(M): health, f"{M}#energy": emodel}
        live = LiveAnalytics(store, plant, [str(M)], models, start=T0, lag_s=0)
        for minute in range(2, 31, 2):
            await live.round(T0 + timedelta(minutes=minute), lag=timedelta(0))
        await live.final_round(T0 + timedelta(minutes=31))
        assert live.stats.failures == 0, live.stats
        got = await store.query(SeriesQuery(str(M), T0, T0 + timedelta(hours=1),
                                            (sig.ANOMALY_SCORE, f"{sig.ANOMALY_SCORE}.energy")))
        events = await store.query_events(EventQuery(asset=str(M)))
    by_signal = {s.signal: s.timestamps() for s in got}
    assert len(by_signal[sig.ANOMALY_SCORE]) == 20 * 60          # running seconds only
    assert len(set(by_signal[f"{sig.ANOMALY_SCORE}.energy"])) == 30 * 60   # every second, idle too
    assert live.stats.per_machine == {str(M): 20 * 60, f"{M}#energy": 30 * 60}
    energy_events = [e for e in events if e.rule == "energy"]
    assert len(energy_events) == 1 and energy_events[0].contributors[0].signal == sig.POWER_KW
    assert T0 + timedelta(minutes=25) <= energy_events[0].start <= T0 + timedelta(minutes=27)
    assert not [e for e in events if e.rule == "anomaly"]         # the health model saw nothing wrong


async def test_models_added_while_the_line_runs_score_from_its_start(tmp_path: Path) -> None:
    """The demo trains its models while the line already runs: models handed over later score
    every running second from the start of the run, once."""
    model = _health_model(np.random.default_rng(1))
    async with DuckDBStore(tmp_path / "z.duckdb") as store:
        await store.write(SampleFrame.from_samples(_samples()))
        plant = _plant()
        live = LiveAnalytics(store, plant, [str(M)], {}, start=T0, lag_s=0)
        for minute in range(2, 12, 2):  # no model yet: nothing scored
            await live.round(T0 + timedelta(minutes=minute), lag=timedelta(0))
        assert live.stats.scored_rows == 0
        live.add_models({str(M): model})
        live.add_models({str(M): model})  # a scope already scored is kept as it is
        for minute in range(12, 31, 2):
            await live.round(T0 + timedelta(minutes=minute), lag=timedelta(0))
        scores = await store.query(SeriesQuery(str(M), T0, T0 + timedelta(hours=1), (sig.ANOMALY_SCORE,)))
    stamps = scores[0].timestamps()
    assert len(stamps) == len(set(stamps)) == 20 * 60 and stamps[0] == T0


class _AddingStore:
    """The store, with ``add_models`` called from inside a round's read — as the demo's task that
    hands over the trained models can run while a round waits on the store."""

    def __init__(self, store: DuckDBStore, models: dict[str, AnomalyModel]) -> None:
        self.store, self.models = store, models
        self.live: LiveAnalytics | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def query(self, q: SeriesQuery) -> object:
        if self.live is not None and self.models:
            self.live.add_models(self.models)
            self.models = {}
        return await self.store.query(q)


async def test_models_added_during_a_round_do_not_break_it(tmp_path: Path) -> None:
    model = _health_model(np.random.default_rng(1))
    async with DuckDBStore(tmp_path / "z.duckdb") as store:
        await store.write(SampleFrame.from_samples(_samples()))
        adding = _AddingStore(store, {f"{M}#second": model})
        live = LiveAnalytics(adding, _plant(), [str(M)], {str(M): model}, start=T0, lag_s=0)  # type: ignore[arg-type]
        adding.live = live
        await live.round(T0 + timedelta(minutes=10), lag=timedelta(0))
        await live.round(T0 + timedelta(minutes=20), lag=timedelta(0))
    assert live.stats.failures == 0 and set(live.scoring) == {str(M), f"{M}#second"}
    assert live.stats.per_machine == {str(M): 20 * 60, f"{M}#second": 20 * 60}


async def test_each_episode_of_a_data_quality_flag_is_sighted(tmp_path: Path) -> None:
    """The CI line with a second screw_torque dropout on pack-1 (at 780 s) — simulated, stored in
    DuckDB and watched by rounds as ``zhizao check`` runs them (every 40 line seconds, 200 s behind
    the clock at ×40): the gap flag is sighted once per dropout, inside each one's window, so
    ``zhizao check`` finds both dropouts (it reported the second one missed)."""
    import yaml

    from simulator.engine import generate
    from simulator.plant_export import plant_config
    from zhizao.stack.expectations import load_play
    from zhizao.stack.verdict import detections, fault_results

    doc = yaml.safe_load(CI.read_text(encoding="utf-8"))
    doc["faults"].append({"machine": "line1/pack-1", "kind": "sensor_dropout", "at": 780, "duration_s": 180,
                          "params": {"signal": "screw_torque"}})
    path = tmp_path / "twodrop.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    scenario, exp = load_play(path)
    generated = generate(scenario, 7, 1200)
    async with DuckDBStore(tmp_path / "z.duckdb") as store:
        await store.write(SampleFrame.from_samples(list(generated)))
        line = f"{scenario.site}/{scenario.area}/line1"
        live = LiveAnalytics(store, plant_config(scenario), [line], {}, start=scenario.start,
                             watch_flags=True)
        for s in range(40, 1201, 40):
            await live.round(scenario.start + timedelta(seconds=s), lag=timedelta(seconds=200))
        await live.final_round(scenario.start + timedelta(seconds=1200))
    assert live.stats.failures == 0
    sightings = live.flags_seen[(f"{line}/pack-1", "telemetry_gap", "screw_torque")]
    at = [(t - scenario.start).total_seconds() for t in sightings]
    assert len(at) == 2 and 300 < at[0] <= 540 and 780 < at[1] <= 1020, at  # dropouts 300-480, 780-960 s
    found, _ = detections(scenario, generated.ledger, [], live.flags_seen)
    dropouts = [d for d in found if d.kind == "sensor_dropout"]
    assert len(dropouts) == 2 and all(d.ttd_s is not None and d.ttd_s <= 240 for d in dropouts), dropouts
    results = [r for r in fault_results(exp, found, [], scenario)
               if r.name.startswith("sensor_dropout on line1/pack-1")]
    assert [(r.name, r.ok) for r in results] == [
        ("sensor_dropout on line1/pack-1 from 2026-11-23T00:05:00Z", True),
        ("sensor_dropout on line1/pack-1 from 2026-11-23T00:13:00Z", True)], results
