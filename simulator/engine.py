"""The deterministic core: advance every machine tick by tick and collect the ledger. No I/O.

``Simulation(scenario, seed, duration_s)`` yields one :class:`Tick` per simulated tick from the
scenario's ``start`` (never wall time): same scenario + seed + duration ⇒ same ticks and a
byte-identical ledger. Each machine draws from its own ``random.Random(f"{seed}:{asset}")``.
:func:`generate` wraps it as an iterator of :class:`zhizao.model.Sample` for offline use.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from simulator.faults import FaultEpisode, all_faults, tick_of
from simulator.kinds import COMMON_UNITS, KINDS
from simulator.ledger import LedgerBuilder
from simulator.machine import Emission, MachineSim
from simulator.scenario import Scenario
from zhizao.model import AssetPath, Sample, trusted_sample, valid_signal
from zhizao.plant import ShiftWindow


@dataclass(frozen=True, slots=True)
class Tick:
    """Everything reported during one tick: ``emissions[k]`` is machine ``k``'s list and
    ``times[k]`` the timestamp it reports (``ts`` plus its clock skew, if any)."""

    index: int
    ts: datetime
    times: list[datetime]
    emissions: list[list[Emission]]


def signal_units(scenario: Scenario) -> list[dict[str, str | None]]:
    """Per machine (scenario order): every signal it reports and its unit (None for unitless)."""
    out: list[dict[str, str | None]] = []
    for _, m in scenario.machines():
        units: dict[str, str | None] = {s.name: s.unit for s in KINDS[m.kind].signals}
        units.update(COMMON_UNITS)
        for name in ("state", "state_reason", "product", "parts_total", "parts_good", "parts_scrap"):
            units[name] = None
        out.append(units)
    return out


class Simulation:
    """One run of a scenario. Iterate :meth:`ticks` once; then :meth:`ledger` gives the records
    (calling :meth:`ledger` first runs the simulation to the end without keeping the ticks)."""

    def __init__(self, scenario: Scenario, seed: int, duration_s: float) -> None:
        if duration_s <= 0:
            raise ValueError("duration_s must be > 0")
        self.scenario = scenario
        self.seed = seed
        self.dt = scenario.tick_s
        self.n_ticks = max(1, round(duration_s / self.dt))
        self.start = scenario.start
        self.end = self.start + timedelta(seconds=self.n_ticks * self.dt)
        machines = scenario.machines()
        self.assets: list[AssetPath] = [a for a, _ in machines]
        self.faults: list[FaultEpisode] = all_faults(scenario, seed, self.end)
        self.machines = [
            MachineSim(
                cfg, random.Random(f"{seed}:{asset}"), self.dt, [f for f in self.faults if f.machine == i]
            )
            for i, (asset, cfg) in enumerate(machines)
        ]
        line_names = [line.name for line in scenario.lines]
        self.machine_line = [line_names.index(a.line) for a in self.assets]
        self.windows: list[ShiftWindow] = scenario.calendar.windows(self.start, self.end)
        self._win_ticks = [(tick_of(scenario, w.start), tick_of(scenario, w.end)) for w in self.windows]
        self._planned_ticks = sorted(
            (tick_of(scenario, a), tick_of(scenario, b)) for w in self.windows for a, b in w.planned
        )
        self.ledger_builder = LedgerBuilder(
            scenario_name=scenario.name,
            seed=seed,
            start=_fmt(self.start),
            end=_fmt(self.end),
            tick_s=self.dt,
            machines=[str(a) for a in self.assets],
            lines=[f"{scenario.site}/{scenario.area}/{n}" for n in line_names],
            machine_line=self.machine_line,
            ideal_ct=[{p.name: p.ideal_cycle_time_s for p in cfg.products} for _, cfg in machines],
            windows=self.windows,
        )
        self.ledger_builder.faults = self.faults
        self._done = False
        self._started = False

    def ticks(self) -> Iterator[Tick]:
        """The ticks in order; may be iterated only once."""
        if self._started:
            raise RuntimeError("a Simulation can be iterated only once")
        self._started = True
        win_i = 0
        plan_i = 0
        step = timedelta(seconds=self.dt)
        n_lines = len(self.scenario.lines)
        lb = self.ledger_builder
        for i in range(self.n_ticks):
            ts = self.start + step * i
            while win_i < len(self._win_ticks) and self._win_ticks[win_i][1] <= i:
                win_i += 1
            window = win_i if win_i < len(self._win_ticks) and self._win_ticks[win_i][0] <= i else -1
            while plan_i < len(self._planned_ticks) and self._planned_ticks[plan_i][1] <= i:
                plan_i += 1
            planned = plan_i < len(self._planned_ticks) and self._planned_ticks[plan_i][0] <= i
            off_reason = "" if planned else ("break" if window >= 0 else "no_shift")
            emissions: list[list[Emission]] = []
            times: list[datetime] = []
            line_kw = [0.0] * n_lines
            for k, m in enumerate(self.machines):
                out, facts = m.step(i, planned, off_reason)
                lb.add(window, planned, k, facts)
                line_kw[self.machine_line[k]] += facts.power_kw
                emissions.append(out)
                times.append(ts + timedelta(seconds=facts.skew_s) if facts.skew_s else ts)
            for li in range(n_lines):
                lb.add_line_power(window, li, line_kw[li])
            yield Tick(i, ts, times, emissions)
        self._done = True

    def ledger(self) -> list[dict[str, Any]]:
        """The ledger records (runs the rest of the simulation if needed)."""
        if not self._done:
            if self._started:
                raise RuntimeError("the ticks were not consumed to the end")
            for _ in self.ticks():
                pass
        return self.ledger_builder.records()


def _fmt(ts: datetime) -> str:
    from zhizao.wire import format_ts

    return format_ts(ts)


class Generated:
    """Iterator of :class:`Sample` (tick order; within a tick by machine then signal) with
    ``ledger`` available once iteration is over (or computed on demand)."""

    def __init__(self, scenario: Scenario, seed: int, duration_s: float) -> None:
        self.simulation = Simulation(scenario, seed, duration_s)
        self.units = signal_units(scenario)
        self._it = self._samples()

    def _samples(self) -> Iterator[Sample]:
        assets = self.simulation.assets
        for name in {n for units in self.units for n in units}:
            if not valid_signal(name):  # checked once here instead of once per sample
                raise ValueError(f"signal name {name!r} is invalid")
        for tick in self.simulation.ticks():
            for k, out in enumerate(tick.emissions):
                ts = tick.times[k]
                units = self.units[k]
                asset = assets[k]
                for name, value, quality in out:
                    yield trusted_sample(asset, name, ts, value, units[name], quality)  # valid by design

    def __iter__(self) -> Iterator[Sample]:
        return self

    def __next__(self) -> Sample:
        return next(self._it)

    @property
    def ledger(self) -> list[dict[str, Any]]:
        for _ in self._it:
            pass
        return self.simulation.ledger()


def generate(scenario: Scenario, seed: int, duration_s: float) -> Generated:
    """Offline API: ``for s in generate(sc, 7, 8 * 3600): ...`` then ``.ledger``. No servers."""
    return Generated(scenario, seed, duration_s)
