"""One simulated machine: state machine, cycles, process signals, power, energy and counters.

Pure and deterministic: everything random comes from the machine's own ``random.Random``, so its
stream never depends on other machines. :meth:`MachineSim.step` simulates the interval
``[t, t + tick_s)`` of tick ``i`` and returns what the machine reports at ``t``:

- ``state``/``state_reason``/``product`` and the part counters: the state during the interval and
  the counters *after* any part completed in it; emitted on change and every 60 simulated seconds
  from the start;
- process signals and ``power_kw`` every tick (``power_kw`` holds for the whole interval);
- ``energy_kwh``: the integral of ``power_kw`` up to ``t`` (so it is exactly the step integral).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulator.faults import FaultEpisode
from simulator.kinds import KINDS, KindSpec, SignalSpec
from simulator.scenario import MachineConfig
from zhizao.model import Quality, Value
from zhizao.signals import (
    ENERGY_KWH,
    PARTS_GOOD,
    PARTS_SCRAP,
    PARTS_TOTAL,
    POWER_KW,
    PRODUCT,
    STATE,
    STATE_REASON,
)

Emission = tuple[str, Value, Quality]
"""(signal, value, quality) reported by one machine at one tick."""

TOOL_LIMIT = 50.0
TOOL_CHANGE_S = 240.0
WEAR_PER_PART = 0.12
OVERHEAT_COOL_S = 900.0


@dataclass(slots=True)
class TickFacts:
    """The ground truth of one machine during one tick, for the ledger."""

    state: str
    reason: str
    power_kw: float
    completed: str | None = None
    """Product of a part completed in this tick (or None)."""
    good: bool = True
    skew_s: float = 0.0


class MachineSim:
    """The simulation of one machine; call :meth:`step` once per tick, in order."""

    def __init__(self, cfg: MachineConfig, rng: random.Random, tick_s: float, faults: list[FaultEpisode]):
        self.cfg = cfg
        self.spec: KindSpec = KINDS[cfg.kind]
        self.rng = rng
        self.dt = tick_s
        self.faults = faults
        self.ticks_per_min = round(60.0 / tick_s)
        self.state = "off"
        self.reason = ""
        self.remaining = 0.0
        self.episode_state = ""
        self.episode_reason = ""
        self.product_idx = 0
        self.in_batch = 0
        self.switch_pending = False
        self.progress = 0.0
        self.cycle_ct = self._new_cycle() if cfg.products else 0.0
        self.micro = 0.0
        self.total = self.good = self.scrap = 0
        self.energy = 0.0
        self.off_parts = (0, 0, 0)
        self.off_energy = 0.0
        self.tool_wear = rng.uniform(0.0, 30.0) if "tool_wear" in self.spec.signal_names else 0.0
        self.step_offset: dict[str, float] = {s.name: 0.0 for s in self.spec.signals}
        self.stuck: dict[str, float] = {}
        self.values: dict[str, float] = {}
        self.last: dict[str, Value] = {}
        self._dyn: list[tuple[SignalSpec, str, float, float, float, bool, bool]] = []
        for sp in self.spec.signals:
            a = math.exp(-tick_s / sp.wander_tau_s)
            self._dyn.append(
                (
                    sp,
                    sp.name,
                    1.0 - math.exp(-tick_s / sp.tau_s),
                    a,
                    sp.wander_sd * math.sqrt(1.0 - a * a),
                    sp.name in self.spec.heat_signals,
                    sp.name == "vibration_rms",
                )
            )
        self._filt: list[float | None] = [None] * len(self._dyn)
        self._dist: list[float] = [0.0] * len(self._dyn)
        self._sensor_faults = any(f.kind in ("sensor_stuck", "sensor_dropout") for f in faults)

    # -- helpers -----------------------------------------------------------------------
    def _product(self) -> str:
        return self.cfg.products[self.product_idx].name if self.cfg.products else ""

    def _new_cycle(self) -> float:
        ict = self.cfg.products[self.product_idx].ideal_cycle_time_s
        slow = self.cfg.speed_loss + self.cfg.cycle_cv * self.rng.gauss(0.0, 1.0)
        ct = ict * max(1.0, 1.0 + slow)
        if self.rng.random() < self.cfg.micro_stop_prob:
            lo, hi = self.cfg.micro_stop_s
            self.micro = self.rng.uniform(lo, hi)
        return ct

    def _start_episode(self, state: str, reason: str, seconds: float) -> None:
        self.episode_state, self.episode_reason, self.remaining = state, reason, max(seconds, self.dt)

    def _pick(self, options: tuple[tuple[str, float], ...]) -> str:
        x = self.rng.random() * sum(w for _, w in options)
        for name, w in options:
            x -= w
            if x < 0:
                return name
        return options[-1][0]

    def _active(self, i: int) -> list[FaultEpisode]:
        return [f for f in self.faults if f.start_tick <= i < f.end_tick]

    # -- the tick ----------------------------------------------------------------------
    def step(self, i: int, planned: bool, off_reason: str) -> tuple[list[Emission], TickFacts]:
        if self.switch_pending:
            self.switch_pending = False
            self.product_idx = (self.product_idx + 1) % len(self.cfg.products)
            self.cycle_ct = self._new_cycle()
        active = self._active(i)
        kinds = {f.kind: f for f in active}
        for f in self.faults:
            if f.kind == "counter_reset" and f.start_tick == i:
                self.off_parts = (self.total, self.good, self.scrap)
                self.off_energy = self.energy
        completed: str | None = None
        good = True
        if not planned:
            state, reason = "off", off_reason
            if self.episode_state:
                self.remaining -= self.dt
                if self.remaining <= 0:
                    self._end_episode()
        else:
            state, reason, completed, good = self._planned_step(i, kinds)
        self.state, self.reason = state, reason
        self._process(i, state, kinds)
        power = self._power(state, kinds)
        skew = float(kinds["clock_skew"].params.get("offset_s", 0.0)) if "clock_skew" in kinds else 0.0
        out = self._emit(i, state, reason, power, active)
        self.energy += power * self.dt / 3600.0
        return out, TickFacts(state, reason, power, completed, good, skew)

    def _end_episode(self) -> None:
        if self.episode_reason == "tool_change":
            self.tool_wear = 0.0
        self.episode_state = self.episode_reason = ""
        self.remaining = 0.0

    def _planned_step(self, i: int, kinds: dict[str, FaultEpisode]) -> tuple[str, str, str | None, bool]:
        if self.episode_state and self.remaining <= 0:
            self._end_episode()
        maint = kinds.get("maintenance_step")
        if maint is not None and self.episode_reason != "maintenance":
            self._start_episode("setup", "maintenance", (maint.end_tick - i) * self.dt)
        if not self.episode_state:
            self._events(kinds)
        completed: str | None = None
        good = True
        if self.episode_state:
            state, reason = self.episode_state, self.episode_reason
            self.remaining -= self.dt
        else:
            state, reason = "running", ""
            if self.cfg.products:
                completed, good = self._produce(kinds)
        return state, reason, completed, good

    def _events(self, kinds: dict[str, FaultEpisode]) -> None:
        """Random breakdowns, starvation and trips while running (consumes a fixed number of draws)."""
        u_fail, u_idle = self.rng.random(), self.rng.random()
        trip = self.spec.trip
        if trip is not None and self.values.get(trip[0], 0.0) > trip[1]:
            self._start_episode("down", "overheat", OVERHEAT_COOL_S * self.rng.uniform(0.8, 1.2))
        elif self.cfg.mtbf_s > 0 and u_fail < self.dt / self.cfg.mtbf_s:
            reason = self._pick(self.spec.down_reasons)
            self._start_episode("down", reason, self.rng.expovariate(1.0 / self.cfg.mttr_s) + 30.0)
        elif self.cfg.idle_every_s > 0 and u_idle < self.dt / self.cfg.idle_every_s:
            reason = self._pick(self.spec.idle_reasons)
            self._start_episode("idle", reason, self.rng.expovariate(1.0 / self.cfg.idle_mean_s) + 10.0)
        elif self.spec.name == "cnc" and self.tool_wear >= TOOL_LIMIT and "tool_wear" not in kinds:
            self._start_episode("setup", "tool_change", TOOL_CHANGE_S * self.rng.uniform(0.8, 1.2))

    def _produce(self, kinds: dict[str, FaultEpisode]) -> tuple[str | None, bool]:
        if self.micro > 0:
            self.micro -= self.dt
            return None, True
        self.progress += self.dt
        if self.progress + 1e-9 < self.cycle_ct:
            return None, True
        product = self._product()
        z = self.spec.scrap_b0 + sum(
            t.coef * abs(self._value_of(t.signal) - t.ref) for t in self.spec.scrap_terms
        )
        good = self.rng.random() >= 1.0 / (1.0 + math.exp(-z))
        self.total += 1
        if good:
            self.good += 1
        else:
            self.scrap += 1
        if self.spec.name == "cnc":
            factor = float(kinds["tool_wear"].params.get("factor", 5.0)) if "tool_wear" in kinds else 1.0
            self.tool_wear += WEAR_PER_PART * factor * max(0.2, 1.0 + 0.3 * self.rng.gauss(0.0, 1.0))
        self.in_batch += 1
        self.progress = 0.0
        if self.in_batch >= self.cfg.products[self.product_idx].batch_size:
            self.in_batch = 0
            if len(self.cfg.products) > 1:
                # the product signal changes from the next tick: the part just made is the old product
                self.switch_pending = True
                if self.cfg.setup_s > 0:
                    self._start_episode("setup", "changeover", self.cfg.setup_s * self.rng.uniform(0.8, 1.2))
                return product, good
        self.cycle_ct = self._new_cycle()
        return product, good

    def _value_of(self, name: str) -> float:
        if name == "tool_wear":
            return self.tool_wear
        return self.values.get(name, 0.0)

    def _process(self, i: int, state: str, kinds: dict[str, FaultEpisode]) -> None:
        heat = 0.0
        oh = kinds.get("overheating")
        if oh is not None:
            span = max(1, oh.end_tick - oh.start_tick)
            heat = float(oh.params.get("delta", 30.0)) * (i - oh.start_tick + 1) / span
        for ep in self.faults:
            if ep.kind == "maintenance_step" and ep.end_tick == i:
                sig = str(ep.params["signal"])
                self.step_offset[sig] += float(ep.params.get("delta", 0.0))
        gauss = self.rng.gauss
        running, off = state == "running", state == "off"
        bw = kinds.get("bearing_wear")
        values, filt, dist = self.values, self._filt, self._dist
        for j, (s, name, alpha, a, wcoef, is_heat, is_vib) in enumerate(self._dyn):
            if s.managed:
                values[name] = self.tool_wear
                continue
            target = s.run if running else (s.off if off else s.idle)
            if heat and is_heat:
                target += heat
            prev = filt[j]
            f = target if prev is None else prev + (target - prev) * alpha
            filt[j] = f
            d = dist[j] * a + wcoef * gauss(0.0, 1.0)
            dist[j] = d
            scale = 1.0 if s.idle > 0 else min(1.0, max(0.0, f / s.run))
            v = f + (d + s.noise_sd * gauss(0.0, 1.0)) * scale + self.step_offset[name]
            if bw is not None and is_vib:
                hours = (i - bw.start_tick) * self.dt / 3600.0
                v += float(bw.params.get("rate_per_h", 1.5)) * hours * (1.0 if running else 0.3)
            values[name] = max(0.0, v)

    def _power(self, state: str, kinds: dict[str, FaultEpisode]) -> float:
        p = self.spec.power_kw[state]
        if self.cfg.rated_kw is not None:
            p *= self.cfg.rated_kw / self.spec.power_kw["running"]
        if state == "running" and self.spec.power_coupling is not None:
            sig, coef, ref = self.spec.power_coupling
            p += coef * (self.values.get(sig, ref) - ref)
        noise = self.rng.gauss(0.0, 1.0)
        if state != "off":
            p *= 1.0 + self.spec.power_noise * noise
            leak = kinds.get("air_leak")
            if leak is not None:
                p *= 1.0 + float(leak.params.get("extra_power", 0.3))
        return round(max(0.0, p), 4)

    def _emit(
        self, i: int, state: str, reason: str, power: float, active: list[FaultEpisode]
    ) -> list[Emission]:
        good_q = Quality.GOOD
        out: list[Emission] = []
        if not self._sensor_faults:
            values, last = self.values, self.last
            for s in self.spec.signals:
                rounded = round(values[s.name], s.decimals)
                last[s.name] = rounded
                out.append((s.name, rounded, good_q))
            return self._emit_rest(i, state, reason, power, out)
        stuck = {str(f.params["signal"]): f for f in active if f.kind == "sensor_stuck"}
        dropped = {str(f.params["signal"]): f for f in active if f.kind == "sensor_dropout"}
        for s in self.spec.signals:
            name = s.name
            if name in dropped:
                if dropped[name].start_tick == i or name not in self.last:
                    out.append((name, float(self.last.get(name, 0.0)), Quality.BAD))
                    self.last[name] = self.last.get(name, 0.0)
                continue
            if name in stuck:
                if name not in self.stuck:
                    self.stuck[name] = float(self.last.get(name, round(self.values[name], s.decimals)))
                v: Value = self.stuck[name]
            else:
                self.stuck.pop(name, None)
                v = round(self.values[name], s.decimals)
            self.last[name] = v
            out.append((name, v, good_q))
        return self._emit_rest(i, state, reason, power, out)

    def _emit_rest(
        self, i: int, state: str, reason: str, power: float, out: list[Emission]
    ) -> list[Emission]:
        good_q = Quality.GOOD
        out.append((POWER_KW, power, good_q))
        out.append((ENERGY_KWH, round(self.energy - self.off_energy, 6), good_q))
        beat = i % self.ticks_per_min == 0
        t0, g0, s0 = self.off_parts
        slow: tuple[tuple[str, Value], ...] = (
            (STATE, state),
            (STATE_REASON, reason),
            (PRODUCT, self._product()),
            (PARTS_TOTAL, self.total - t0),
            (PARTS_GOOD, self.good - g0),
            (PARTS_SCRAP, self.scrap - s0),
        )
        for name, value in slow:
            if beat or self.last.get(name) != value:
                self.last[name] = value
                out.append((name, value, good_q))
        return out
