"""The ground-truth ledger: fault episodes and exact KPI inputs per machine and shift window.

Follows the shared KPI definitions (``simulator/README.md``): times are counted per tick of
planned time by the true state; a part counts in the window of the tick it completes in; energy is
the sum of ``power_kw * tick_s`` over the window's ticks (breaks included), i.e. the increase of the
``energy_kwh`` counter over ``[start, end)``; a failure is an entry into ``down`` and counts in the
window where it starts. Records are JSON Lines, keys sorted, floats rounded to 6 decimals, in a fixed
order (run, faults by start, shifts by window then machine, line_shifts by window then line), so the
same seed gives a byte-identical file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.faults import FaultEpisode
from simulator.machine import TickFacts
from zhizao.plant import ShiftWindow
from zhizao.wire import format_ts

STATES = ("running", "idle", "setup", "down", "off")


@dataclass(slots=True)
class ShiftAcc:
    """Running sums of one machine (or line) over one shift window."""

    planned: float = 0.0
    by_state: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STATES[:4], 0.0))
    by_reason: dict[str, float] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)
    energy: float = 0.0
    energy_by_state: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STATES, 0.0))
    peak: float = 0.0
    failures: int = 0
    ideal: float = 0.0


class LedgerBuilder:
    """Accumulates tick facts; :meth:`records` gives the ledger once the run is over."""

    def __init__(
        self,
        *,
        scenario_name: str,
        seed: int,
        start: str,
        end: str,
        tick_s: float,
        machines: list[str],
        lines: list[str],
        machine_line: list[int],
        ideal_ct: list[dict[str, float]],
        windows: list[ShiftWindow],
    ) -> None:
        self.head = {
            "type": "run",
            "scenario": scenario_name,
            "seed": seed,
            "start": start,
            "end": end,
            "tick_s": tick_s,
        }
        self.machines = machines
        self.lines = lines
        self.machine_line = machine_line
        self.ideal_ct = ideal_ct
        self.windows = windows
        self.dt = tick_s
        self.acc = [[ShiftAcc() for _ in machines] for _ in windows]
        self.line_peak = [[0.0 for _ in lines] for _ in windows]
        self.prev_state = ["" for _ in machines]
        self.faults: list[FaultEpisode] = []

    def add(self, window: int, planned: bool, machine: int, facts: TickFacts) -> None:
        """Record one machine's tick; ``window`` is -1 outside every shift window."""
        prev = self.prev_state[machine]
        self.prev_state[machine] = facts.state
        if window < 0:
            return
        a = self.acc[window][machine]
        kwh = facts.power_kw * self.dt / 3600.0
        a.energy += kwh
        a.energy_by_state[facts.state] += kwh
        a.peak = max(a.peak, facts.power_kw)
        if planned:
            a.planned += self.dt
            a.by_state[facts.state] += self.dt
            if facts.state != "running":
                key = f"{facts.state}:{facts.reason}"
                a.by_reason[key] = a.by_reason.get(key, 0.0) + self.dt
            if facts.state == "down" and prev != "down":
                a.failures += 1
        if facts.completed is not None:
            c = a.counts.setdefault(facts.completed, [0, 0, 0])
            c[0] += 1
            c[1 if facts.good else 2] += 1
            a.ideal += self.ideal_ct[machine][facts.completed]

    def add_line_power(self, window: int, line: int, kw: float) -> None:
        if window >= 0:
            self.line_peak[window][line] = max(self.line_peak[window][line], kw)

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [self.head]
        for f in self.faults:
            out.append(
                {
                    "type": "fault",
                    "machine": self.machines[f.machine],
                    "kind": f.kind,
                    "start": format_ts(f.start),
                    "end": format_ts(f.end),
                    "params": f.params,
                }
            )
        for w, win in enumerate(self.windows):
            for m, name in enumerate(self.machines):
                out.append(
                    _shift_record(
                        "shift", "machine", name, win=win, a=self.acc[w][m], peak=self.acc[w][m].peak
                    )
                )
        for w, win in enumerate(self.windows):
            for li, line in enumerate(self.lines):
                total = ShiftAcc()
                for m in range(len(self.machines)):
                    if self.machine_line[m] == li:
                        _merge(total, self.acc[w][m], producing=bool(self.ideal_ct[m]))
                out.append(
                    _shift_record("line_shift", "line", line, win=win, a=total, peak=self.line_peak[w][li])
                )
        return [_round(r) for r in out]


def _merge(into: ShiftAcc, a: ShiftAcc, *, producing: bool) -> None:
    """Add machine ``a`` to line total ``into``. A machine without ideal cycle times (a compressor)
    adds only its energy: its times and stops would enter the line's A, P, OEE, MTBF and MTTR,
    where a machine that makes no parts can only show a Performance of 0."""
    into.energy += a.energy
    for k, v in a.energy_by_state.items():
        into.energy_by_state[k] += v
    if not producing:
        return
    into.planned += a.planned
    for k, v in a.by_state.items():
        into.by_state[k] += v
    for k, v in a.by_reason.items():
        into.by_reason[k] = into.by_reason.get(k, 0.0) + v
    for p, c in a.counts.items():
        t = into.counts.setdefault(p, [0, 0, 0])
        for i in range(3):
            t[i] += c[i]
    into.failures += a.failures
    into.ideal += a.ideal


def _shift_record(
    kind: str, key: str, name: str, *, win: ShiftWindow, a: ShiftAcc, peak: float
) -> dict[str, Any]:
    total = sum(c[0] for c in a.counts.values())
    good = sum(c[1] for c in a.counts.values())
    run = a.by_state["running"]
    down = a.by_state["down"]
    availability = run / a.planned if a.planned > 0 else 0.0
    performance = a.ideal / run if run > 0 else 0.0
    quality = good / total if total > 0 else 1.0
    return {
        "type": kind,
        key: name,
        "shift": win.id,
        "start": format_ts(win.start),
        "end": format_ts(win.end),
        "planned_time_s": a.planned,
        "run_time_s": run,
        "idle_time_s": a.by_state["idle"],
        "setup_time_s": a.by_state["setup"],
        "down_time_s": down,
        "down_time_s_by_reason": dict(sorted(a.by_reason.items())),
        "ideal_time_s": a.ideal,
        "total_count": total,
        "good_count": good,
        "scrap_count": total - good,
        "count_by_product": {
            p: {"total": c[0], "good": c[1], "scrap": c[2]} for p, c in sorted(a.counts.items())
        },
        "energy_kwh": a.energy,
        "energy_by_state_kwh": a.energy_by_state,
        "peak_kw": peak,
        "availability": availability,
        "performance": performance,
        "quality": quality,
        "oee": availability * performance * quality,
        "kwh_per_good_part": a.energy / good if good > 0 else None,
        "failures": a.failures,
        "mtbf_s": run / a.failures if a.failures else None,
        "mttr_s": down / a.failures if a.failures else None,
    }


def _round(x: Any) -> Any:
    if isinstance(x, float):
        r = round(x, 6)
        return 0.0 if r == 0 else r
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v) for v in x]
    return x


def dumps_record(record: dict[str, Any]) -> str:
    """One ledger line (no newline): keys sorted, compact separators."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write_ledger(records: Iterable[dict[str, Any]], path: str | Path) -> None:
    """Write the ledger as JSON Lines (UTF-8, ``\\n`` endings)."""
    with Path(path).open("w", encoding="utf-8", newline="\n") as fh:
        for r in records:
            fh.write(dumps_record(r) + "\n")


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """Read a ledger back (for tests and QA tools)."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
