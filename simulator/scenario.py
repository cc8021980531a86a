"""The scenario file: the line to simulate, its calendar, machines and scheduled faults.

A scenario is a TOML or YAML document validated into :class:`Scenario` (every problem is
reported with its dotted key by :func:`load_scenario`). ``simulator/README.md`` documents every
key; ``examples/workshop.toml`` is the reference example.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.kinds import KINDS, PROCESS_FAULT_KINDS
from zhizao.config import StrictModel, load_config
from zhizao.model import AssetPath, valid_segment
from zhizao.plant import ShiftCalendar, Tariff

FaultKind = Literal[
    "bearing_wear",
    "overheating",
    "air_leak",
    "tool_wear",
    "sensor_stuck",
    "sensor_dropout",
    "maintenance_step",
    "clock_skew",
    "counter_reset",
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]
Vendor = Literal["acme", "brightline"]


class Product(StrictModel):
    """A product (recipe) a machine makes: its ideal cycle time and how many parts per batch."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    ideal_cycle_time_s: float = Field(gt=0)
    batch_size: int = Field(100, ge=1)


class MqttNative(StrictModel):
    """The machine publishes its own MQTT payloads (vendor shapes documented in the README)."""

    vendor: Vendor
    qos: Literal[0, 1, 2] = 1


class MachineConfig(StrictModel):
    """One machine of a line.

    Times are seconds. ``mtbf_s``/``mttr_s`` drive random breakdowns (``0`` disables them),
    ``idle_every_s``/``idle_mean_s`` random starved/blocked pauses, ``setup_s`` the product
    changeover, ``speed_loss`` the mean fraction by which real cycles are slower than ideal,
    ``micro_stop_prob`` the chance per cycle of a short pause that keeps state ``running``.
    """

    name: str
    kind: str
    products: list[Product] = Field(default_factory=list)
    setup_s: float = Field(900.0, ge=0)
    mtbf_s: float = Field(14400.0, ge=0)
    mttr_s: float = Field(600.0, gt=0)
    idle_every_s: float = Field(5400.0, ge=0)
    idle_mean_s: float = Field(240.0, gt=0)
    speed_loss: float = Field(0.05, ge=0, le=1)
    cycle_cv: float = Field(0.03, ge=0, le=0.5)
    micro_stop_prob: float = Field(0.03, ge=0, le=1)
    micro_stop_s: tuple[float, float] = (5.0, 40.0)
    rated_kw: float | None = Field(None, gt=0)
    mqtt: MqttNative | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not valid_segment(v):
            raise ValueError(f"machine name {v!r} must be 1-64 letters, digits, '_', '.', '-'")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in KINDS:
            raise ValueError(f"unknown machine kind {v!r}; choose from {', '.join(sorted(KINDS))}")
        return v

    @model_validator(mode="after")
    def _products(self) -> MachineConfig:
        if KINDS[self.kind].makes_parts and not self.products:
            raise ValueError(f"a {self.kind} machine needs at least one product")
        names = [p.name for p in self.products]
        if len(set(names)) != len(names):
            raise ValueError("product names must be unique")
        return self


class LineConfig(StrictModel):
    name: str
    machines: list[MachineConfig] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not valid_segment(v):
            raise ValueError(f"line name {v!r} must be 1-64 letters, digits, '_', '.', '-'")
        return v


class FaultConfig(StrictModel):
    """A scheduled fault: ``machine`` is ``<line>/<machine>``; ``at`` an absolute time or seconds
    after the scenario start; it lasts ``duration_s``. ``params`` depend on the kind (README)."""

    machine: str
    kind: FaultKind
    at: datetime | float
    duration_s: float = Field(gt=0)
    params: dict[str, float | str] = Field(default_factory=dict)


def _default_random_kinds() -> list[FaultKind]:
    return ["bearing_wear", "overheating", "sensor_dropout"]


class RandomFaults(StrictModel):
    """Faults drawn from the run seed: on average ``per_machine_per_day`` per machine per day,
    each of a kind from ``kinds`` that applies to the machine, lasting ``duration_s`` on average."""

    per_machine_per_day: float = Field(0.0, ge=0)
    kinds: list[FaultKind] = Field(default_factory=_default_random_kinds)
    duration_s: float = Field(3600.0, gt=0)


class Scenario(StrictModel):
    """A simulated line (or several lines of one site and area)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    site: str
    area: str
    start: datetime
    tick_s: float = Field(1.0, gt=0, le=60)
    calendar: ShiftCalendar
    tariff: Tariff = Tariff()
    lines: list[LineConfig] = Field(min_length=1)
    faults: list[FaultConfig] = Field(default_factory=list)
    random_faults: RandomFaults = RandomFaults()

    @field_validator("site", "area")
    @classmethod
    def _segment(cls, v: str) -> str:
        if not valid_segment(v):
            raise ValueError(f"{v!r} must be 1-64 letters, digits, '_', '.', '-'")
        return v

    @field_validator("start")
    @classmethod
    def _start(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a UTC offset (e.g. 2026-11-23T08:00:00+08:00)")
        return v.astimezone(UTC)

    @field_validator("tick_s")
    @classmethod
    def _tick(cls, v: float) -> float:
        per_minute = 60.0 / v
        if abs(per_minute - round(per_minute)) > 1e-9:
            raise ValueError("tick_s must divide 60 seconds evenly (e.g. 0.5, 1, 2, 5, 10)")
        return v

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        _check_tick_grid(self.start, self.tick_s)
        seen: set[str] = set()
        for line in self.lines:
            for m in line.machines:
                key = f"{line.name}/{m.name}"
                if key in seen:
                    raise ValueError(f"machine {key} is listed twice")
                seen.add(key)
                for p in m.products:
                    if p.ideal_cycle_time_s < 2 * self.tick_s:
                        raise ValueError(
                            f"{key}: product {p.name} ideal_cycle_time_s must be at least 2 ticks"
                        )
        for i, f in enumerate(self.faults):
            if f.machine not in seen:
                raise ValueError(
                    f"faults[{i}].machine {f.machine!r} is not a <line>/<machine> of this scenario"
                )
            kind = self.machine(f.machine).kind
            _check_fault(f, kind, i)
        return self

    def machine(self, key: str) -> MachineConfig:
        """The machine ``<line>/<machine>``; ``KeyError`` if there is none."""
        line_name, _, name = key.partition("/")
        for line in self.lines:
            if line.name == line_name:
                for m in line.machines:
                    if m.name == name:
                        return m
        raise KeyError(key)

    def machines(self) -> list[tuple[AssetPath, MachineConfig]]:
        """Every machine with its asset path, in scenario order (the order of outputs)."""
        return [
            (AssetPath(self.site, self.area, line.name, m.name), m)
            for line in self.lines
            for m in line.machines
        ]

    def fault_start(self, f: FaultConfig) -> datetime:
        if isinstance(f.at, datetime):
            if f.at.tzinfo is None:
                raise ValueError("fault time needs a UTC offset")
            return f.at.astimezone(UTC)
        return self.start + timedelta(seconds=float(f.at))


def _check_tick_grid(start: datetime, tick_s: float) -> None:
    offset = (start.second + start.microsecond / 1e6) % tick_s
    if min(offset, tick_s - offset) > 1e-6:
        raise ValueError(
            "start must fall on the tick grid (its seconds a multiple of tick_s), so shift "
            "boundaries on whole minutes fall on ticks"
        )


def with_start(scenario: Scenario, start: datetime) -> Scenario:
    """``scenario`` starting at ``start`` instead of its own ``start`` (``zhizao sim --start``).

    Nothing else changes: the shift calendar and tariff (times of day in their timezone), the
    machines and the run seed's random streams, and every fault whose ``at`` is in seconds after
    the start moves with it; a fault at an absolute time stays at that time. So a start moved by
    whole days onto a day with the same shifts gives the same samples, each moved by the same
    amount. ``ValueError`` if ``start`` has no UTC offset or is not on the tick grid."""
    if start.tzinfo is None:
        raise ValueError("start needs a UTC offset (e.g. 2026-11-24T08:00:00+08:00)")
    start = start.astimezone(UTC)
    _check_tick_grid(start, scenario.tick_s)
    return scenario.model_copy(update={"start": start})


def _check_fault(f: FaultConfig, kind: str, i: int) -> None:
    spec = KINDS[kind]
    where = f"faults[{i}] ({f.kind} on {f.machine})"
    if f.kind in ("sensor_stuck", "sensor_dropout", "maintenance_step"):
        sig = f.params.get("signal")
        if sig not in spec.signal_names:
            raise ValueError(
                f"{where}: params.signal must be a process signal of a {kind}: {', '.join(spec.signal_names)}"
            )
    if f.kind not in PROCESS_FAULT_KINDS.get(kind, FAULT_KINDS):
        raise ValueError(f"{where}: a {kind} cannot have a {f.kind} fault")
    for key, value in f.params.items():
        if key != "signal" and not (isinstance(value, float | int) and math.isfinite(float(value))):
            raise ValueError(f"{where}: params.{key} must be a number")
    if isinstance(f.at, datetime) and f.at.tzinfo is None:
        raise ValueError(f"{where}: at needs a UTC offset")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ``zhizao.errors.ConfigError`` naming each bad key."""
    return load_config(Scenario, path)


def scenario_from_dict(doc: dict[str, Any]) -> Scenario:
    """Validate an in-memory scenario (tests build small ones this way)."""
    from zhizao.config import validate

    return validate(Scenario, doc, "<scenario>")
