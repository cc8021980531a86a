"""What a scenario file expects of the stack: the ``expectations`` section ``zhizao check`` reads.

The simulator's scenario model (``simulator.scenario.Scenario``) forbids unknown keys and has no
expectations of its own, so :func:`load_play` reads the file once, takes the top-level
``expectations`` table out, validates it here and the rest with the simulator's model; both report
problems with their dotted keys (``expectations.kpis[0].tolerance``). Example (YAML)::

    expectations:
      run: {duration_s: 1200, stop_agent_at_s: null}   # simulated seconds from the scenario start
      kpis:                                            # default: every line's OEE/A/P/Q, kWh per good
        - {scope: line1, kpi: oee}                     #   part, MTBF/MTTR and counts vs the ledger
        - {scope: line1/cnc-1, kpi: good_count}        # counts are exact
        - {scope: line1, kpi: oee, equals: 0.62, tolerance: 0.01}  # a fixed value instead of the ledger
      faults:
        - {machine: line1/imm-1, kind: overheating, detect_within_s: 1200}
      max_false_alarms: 3
      max_lost_samples: 0

KPI scopes are ``<line>`` or ``<line>/<machine>`` (site and area are the scenario's). Without
``equals`` a KPI is compared with the simulator's ground-truth ledger for every shift window of
the run; default tolerances are those of the KPI issue: ratios 0.01 absolute, kWh per good part and
energy 1 % relative, MTBF/MTTR 2 % relative, counts exact.

Every expectation written yields a result line, met or failed — none is skipped silently: a KPI
expectation one per shift window of the run, or one failed line saying why when there is nothing
to compare (no shift window in the run); a fault expectation one per episode of that fault in the
run. What the file alone shows cannot be judged is refused before the run (exit 2, with every
other problem of the file): a fault expected but not scheduled, or scheduled to start only at or
after the run's end, and the same fault (machine and kind) expected twice.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from simulator.scenario import Scenario
from zhizao.config import StrictModel, read_document, validate, validation_problems
from zhizao.errors import ConfigError

KpiName = Literal[
    "oee", "availability", "performance", "quality", "kwh_per_good_part", "energy_kwh",
    "mtbf_s", "mttr_s", "total_count", "good_count", "scrap_count", "failures",
]
RATIOS = ("oee", "availability", "performance", "quality")
COUNTS = ("total_count", "good_count", "scrap_count", "failures")
DEFAULT_KPIS: tuple[str, ...] = (*RATIOS, "kwh_per_good_part", "mtbf_s", "mttr_s", "total_count",
                                 "good_count", "scrap_count")


def default_tolerance(kpi: str) -> tuple[float, bool]:
    """``(tolerance, relative)`` of the KPI issue for ``kpi``."""
    if kpi in RATIOS:
        return 0.01, False
    if kpi in ("kwh_per_good_part", "energy_kwh"):
        return 0.01, True
    if kpi in ("mtbf_s", "mttr_s"):
        return 0.02, True
    return 0.0, False


class RunSpec(StrictModel):
    duration_s: float | None = Field(None, gt=0)
    """Simulated seconds to play; default: to the end of the first shift window of the scenario."""
    stop_agent_at_s: float | None = Field(None, ge=0)
    """Chaos: the edge agent is stopped at this simulated second and never comes back."""


class KpiExpectation(StrictModel):
    scope: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}(/[A-Za-z0-9_.\-]{1,64})?$")
    kpi: KpiName
    equals: float | None = None
    """A fixed expected value; ``None`` compares with the ledger."""
    tolerance: float | None = Field(None, ge=0)
    relative: bool | None = None

    def bound(self) -> tuple[float, bool]:
        tol, rel = default_tolerance(self.kpi)
        return (self.tolerance if self.tolerance is not None else tol,
                self.relative if self.relative is not None else rel)


class FaultExpectation(StrictModel):
    machine: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}/[A-Za-z0-9_.\-]{1,64}$")
    """``<line>/<machine>`` as in the scenario's ``faults``."""
    kind: str
    detect_within_s: float = Field(gt=0)
    """Simulated seconds from the fault's start to its detection: an anomaly alarm going out (its
    episode's ``raised_at``, the on-delay after the episode's start; until session 10 the start
    was counted) or a data-quality flag sighted in the fault's window (each fault of the kind on
    the machine is judged on its own, with a detection of its own)."""


class Expectations(StrictModel):
    run: RunSpec = Field(default_factory=RunSpec)
    kpis: list[KpiExpectation] | None = None
    """``None`` = the default set for every line; ``[]`` = no KPI expectation."""
    faults: list[FaultExpectation] = Field(default_factory=list)
    max_false_alarms: int | None = Field(None, ge=0)
    """``None`` reports false alarms without failing on them."""
    max_lost_samples: int = Field(0, ge=0)
    """Samples served by the simulator but not stored (and duplicates stored) allowed."""


def default_duration(scenario: Scenario) -> float:
    """Seconds from the scenario start to the end of its first shift window (at least one hour
    of data when the calendar has none in the first week)."""
    windows = scenario.calendar.windows(scenario.start, scenario.start + timedelta(days=7))
    first = next((w for w in windows if w.end > scenario.start), None)
    return (first.end - scenario.start).total_seconds() if first is not None else 3600.0


def run_duration(scenario: Scenario, exp: Expectations, duration_s: float | None = None) -> float:
    """Simulated seconds the check plays: ``duration_s`` (``--duration``), else
    ``expectations.run.duration_s``, else to the end of the first shift window."""
    return duration_s or exp.run.duration_s or default_duration(scenario)


def load_play(path: str | Path, duration_s: float | None = None) -> tuple[Scenario, Expectations]:
    """The scenario and its expectations from one file; ``ConfigError`` names every bad key, of
    the scenario and of the expectations at once. ``duration_s`` is ``--duration``: an expected
    fault must start before the run's end (:func:`run_duration`), or it could never be judged."""
    p = Path(path)
    doc = read_document(p)
    raw: Any = doc.pop("expectations", None)
    problems: list[tuple[str, str]] = []
    scenario: Scenario | None = None
    expectations: Expectations | None = None
    try:
        scenario = validate(Scenario, doc, str(p))
    except ConfigError as exc:
        problems += exc.problems
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(("expectations", "must be a table/mapping"))
    else:
        try:
            expectations = Expectations.model_validate(raw)
        except ValidationError as exc:
            problems += [(f"expectations.{k}" if k else "expectations", m)
                         for k, m in validation_problems(exc)]
    if scenario is not None and expectations is not None:
        problems += _fault_problems(scenario, expectations, duration_s)
    if problems or scenario is None or expectations is None:
        raise ConfigError(str(p), problems)
    return scenario, expectations


def _fault_problems(scenario: Scenario, exp: Expectations,
                    duration_s: float | None) -> list[tuple[str, str]]:
    """Fault expectations that could never be judged: no such scheduled fault, none of them
    starting before the run's end, or the same fault expected twice."""
    problems: list[tuple[str, str]] = []
    end = scenario.start + timedelta(seconds=run_duration(scenario, exp, duration_s))
    first: dict[tuple[str, str], int] = {}
    for i, f in enumerate(exp.faults):
        key = f"expectations.faults[{i}]"
        if (f.machine, f.kind) in first:
            problems.append((key, f"{f.kind} on {f.machine} is already expected by "
                                  f"expectations.faults[{first[f.machine, f.kind]}]"))
            continue
        first[f.machine, f.kind] = i
        starts = [scenario.fault_start(sf) for sf in scenario.faults
                  if sf.machine == f.machine and sf.kind == f.kind]
        if not starts:
            problems.append((key, f"the scenario schedules no {f.kind} fault on {f.machine}"))
        elif min(starts) >= end:
            at = (min(starts) - scenario.start).total_seconds()
            run = (end - scenario.start).total_seconds()
            problems.append((key, f"the scenario's {f.kind} fault on {f.machine} starts at {at:g} s, at or "
                                  f"after the run's end ({run:g} s): it cannot be detected in this run"))
    return problems
