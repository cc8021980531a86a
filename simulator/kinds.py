"""Machine kinds: the process signals, power draw and scrap model of each type of machine.

Pure data. A process signal follows a first-order lag (time constant ``tau_s``) towards a target
that depends on the machine state, plus a slow AR(1) wander (``wander_sd``) and white noise
(``noise_sd``). Scrap probability per part is logistic in the process values at completion:
``p = 1 / (1 + exp(-(b0 + sum(coef * |value - ref|))))`` so quality is predictable from the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """A process signal (float) with its unit and state-dependent targets."""

    name: str
    unit: str
    run: float
    idle: float
    off: float
    noise_sd: float = 0.0
    tau_s: float = 30.0
    wander_sd: float = 0.0
    wander_tau_s: float = 600.0
    decimals: int = 3
    managed: bool = False
    """Set by the machine model itself (tool wear), not by the lag/noise dynamics."""


@dataclass(frozen=True, slots=True)
class ScrapTerm:
    signal: str
    ref: float
    coef: float


@dataclass(frozen=True, slots=True)
class KindSpec:
    """Everything kind-specific about a machine."""

    name: str
    description: str
    makes_parts: bool
    signals: tuple[SignalSpec, ...]
    power_kw: dict[str, float]
    """Power by state (running, idle, setup, down, off) before load coupling and noise."""
    power_coupling: tuple[str, float, float] | None = None
    """(signal, kW per unit, reference): running power += coef * (value - ref)."""
    power_noise: float = 0.02
    """Relative white noise on power in every state but off."""
    scrap_b0: float = -8.0
    scrap_terms: tuple[ScrapTerm, ...] = ()
    heat_signals: tuple[str, ...] = ()
    trip: tuple[str, float] | None = None
    """(signal, limit): above it the machine trips into ``down:overheat``."""
    down_reasons: tuple[tuple[str, float], ...] = (("breakdown", 1.0),)
    idle_reasons: tuple[tuple[str, float], ...] = (("starved", 0.6), ("blocked", 0.4))
    signal_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal_names", tuple(s.name for s in self.signals))


_OFF = 0.0
COMMON_FAULTS: Final = (
    "bearing_wear",
    "overheating",
    "sensor_stuck",
    "sensor_dropout",
    "maintenance_step",
    "clock_skew",
    "counter_reset",
)

CNC = KindSpec(
    name="cnc",
    description="CNC machining centre (milling); scrap grows with tool wear",
    makes_parts=True,
    signals=(
        SignalSpec("spindle_speed", "rpm", 12000.0, 0.0, 0.0, noise_sd=15.0, tau_s=3.0, decimals=1),
        SignalSpec("spindle_load", "%", 42.0, 2.0, 0.0, noise_sd=1.5, tau_s=5.0, wander_sd=2.0),
        SignalSpec("feed_rate", "mm/min", 2400.0, 0.0, 0.0, noise_sd=10.0, tau_s=3.0, decimals=1),
        SignalSpec("motor_current", "A", 21.0, 4.0, 0.0, noise_sd=0.4, tau_s=5.0),
        SignalSpec("vibration_rms", "mm/s", 1.8, 0.3, 0.05, noise_sd=0.08, tau_s=10.0, wander_sd=0.05),
        SignalSpec("spindle_temp", "degC", 38.0, 28.0, 22.0, noise_sd=0.1, tau_s=900.0),
        SignalSpec("coolant_temp", "degC", 24.0, 22.0, 21.0, noise_sd=0.05, tau_s=1200.0),
        SignalSpec("tool_wear", "%", 0.0, 0.0, 0.0, managed=True, decimals=2),
    ),
    power_kw={"running": 9.0, "idle": 2.8, "setup": 3.2, "down": 1.5, "off": 0.4},
    power_coupling=("spindle_load", 0.12, 42.0),
    scrap_b0=-7.0,
    scrap_terms=(ScrapTerm("tool_wear", 0.0, 0.08),),
    heat_signals=("spindle_temp",),
    trip=("spindle_temp", 60.0),
    down_reasons=(("jam", 0.4), ("spindle_fault", 0.3), ("electrical", 0.3)),
)

MOULDING = KindSpec(
    name="injection_moulding",
    description="Injection-moulding machine; scrap depends on melt temperature and hold pressure",
    makes_parts=True,
    signals=(
        SignalSpec("melt_temp", "degC", 230.0, 226.0, 60.0, noise_sd=0.4, tau_s=120.0, wander_sd=2.0),
        SignalSpec("mould_temp", "degC", 55.0, 50.0, 25.0, noise_sd=0.2, tau_s=300.0, wander_sd=0.8),
        SignalSpec("hold_pressure", "bar", 600.0, 0.0, 0.0, noise_sd=6.0, tau_s=2.0, wander_sd=10.0),
        SignalSpec("injection_pressure", "bar", 1150.0, 0.0, 0.0, noise_sd=12.0, tau_s=2.0),
        SignalSpec("clamp_force", "kN", 1800.0, 0.0, 0.0, noise_sd=8.0, tau_s=2.0, decimals=1),
        SignalSpec("oil_temp", "degC", 45.0, 40.0, 24.0, noise_sd=0.1, tau_s=900.0),
        SignalSpec("motor_current", "A", 32.0, 8.0, 0.0, noise_sd=0.6, tau_s=3.0),
        SignalSpec("vibration_rms", "mm/s", 2.2, 0.6, 0.05, noise_sd=0.1, tau_s=10.0, wander_sd=0.05),
    ),
    power_kw={"running": 18.0, "idle": 7.5, "setup": 6.0, "down": 4.0, "off": 0.8},
    power_coupling=("melt_temp", 0.08, 230.0),
    scrap_b0=-5.5,
    scrap_terms=(ScrapTerm("melt_temp", 230.0, 0.35), ScrapTerm("hold_pressure", 600.0, 0.03)),
    heat_signals=("melt_temp", "oil_temp"),
    trip=("melt_temp", 252.0),
    down_reasons=(("jam", 0.3), ("mould_fault", 0.3), ("heater_fault", 0.2), ("hydraulic", 0.2)),
)

COMPRESSOR = KindSpec(
    name="compressor",
    description="Screw air compressor, the plant's energy hog; makes no parts",
    makes_parts=False,
    signals=(
        SignalSpec("outlet_pressure", "bar", 7.5, 7.0, 0.0, noise_sd=0.03, tau_s=20.0, wander_sd=0.05),
        SignalSpec("air_flow", "m3/min", 9.5, 1.0, 0.0, noise_sd=0.15, tau_s=20.0, wander_sd=0.6),
        SignalSpec("motor_current", "A", 95.0, 30.0, 0.0, noise_sd=1.0, tau_s=10.0, wander_sd=3.0),
        SignalSpec("oil_temp", "degC", 78.0, 65.0, 25.0, noise_sd=0.1, tau_s=900.0),
        SignalSpec("vibration_rms", "mm/s", 2.8, 1.2, 0.05, noise_sd=0.1, tau_s=10.0, wander_sd=0.05),
    ),
    power_kw={"running": 55.0, "idle": 18.0, "setup": 5.0, "down": 2.0, "off": 0.5},
    power_coupling=("air_flow", 3.0, 9.5),
    power_noise=0.01,
    heat_signals=("oil_temp",),
    trip=("oil_temp", 100.0),
    down_reasons=(("overload", 0.5), ("electrical", 0.5)),
    idle_reasons=(("unloaded", 1.0),),
)

ASSEMBLY = KindSpec(
    name="assembly",
    description="Assembly/packaging station (screwdriving, conveyor); scrap from torque deviation",
    makes_parts=True,
    signals=(
        SignalSpec("conveyor_speed", "m/min", 12.0, 0.0, 0.0, noise_sd=0.05, tau_s=2.0),
        SignalSpec("screw_torque", "N.m", 4.5, 0.0, 0.0, noise_sd=0.04, tau_s=1.0, wander_sd=0.05),
        SignalSpec("air_pressure", "bar", 6.2, 6.2, 0.0, noise_sd=0.02, tau_s=10.0, wander_sd=0.03),
        SignalSpec("motor_current", "A", 6.5, 1.5, 0.0, noise_sd=0.1, tau_s=3.0),
        SignalSpec("vibration_rms", "mm/s", 1.1, 0.2, 0.05, noise_sd=0.05, tau_s=10.0, wander_sd=0.03),
        SignalSpec("motor_temp", "degC", 42.0, 32.0, 22.0, noise_sd=0.1, tau_s=600.0),
    ),
    power_kw={"running": 3.5, "idle": 1.2, "setup": 1.0, "down": 0.6, "off": 0.2},
    scrap_b0=-6.5,
    scrap_terms=(ScrapTerm("screw_torque", 4.5, 20.0),),
    heat_signals=("motor_temp",),
    trip=("motor_temp", 70.0),
    down_reasons=(("jam", 0.6), ("sensor_fault", 0.2), ("electrical", 0.2)),
)

KINDS: Final[dict[str, KindSpec]] = {k.name: k for k in (CNC, MOULDING, COMPRESSOR, ASSEMBLY)}

PROCESS_FAULT_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "cnc": (*COMMON_FAULTS, "tool_wear"),
    "injection_moulding": COMMON_FAULTS,
    "compressor": (*COMMON_FAULTS, "air_leak"),
    "assembly": COMMON_FAULTS,
}
"""Which fault kinds apply to which machine kind."""

COMMON_UNITS: Final[dict[str, str]] = {"power_kw": "kW", "energy_kwh": "kWh"}
