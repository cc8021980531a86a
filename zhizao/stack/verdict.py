"""Comparing a played run with the simulator's ground truth: the results ``zhizao check`` reports.

Inputs are plain data (the ledger records, the KPI report from the store, the anomaly events, the
sightings of data-quality flags, served/stored sample counts), so the comparison is pure and
testable without servers. Each :class:`Result` is one line of the report and one JUnit test case;
``ok`` is ``None`` for figures reported without an expectation on them. Every expectation yields
at least one line: one that cannot be judged (nothing in the run to compare it with) fails,
saying why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from analytics.events.tracker import RAISED_AT
from simulator.scenario import Scenario
from zhizao.events import Event, EventSource
from zhizao.stack.expectations import COUNTS, DEFAULT_KPIS, Expectations, KpiExpectation, default_tolerance
from zhizao.wire import parse_ts

FLAG_OF_FAULT = {"sensor_dropout": "telemetry_gap", "counter_reset": "counter_reset",
                 "clock_skew": "clock_skew"}
"""Faults the data-quality checks see (flag kind); the others are for the anomaly models."""
GRACE = timedelta(minutes=5)
"""An anomaly episode starting this long after a fault ended is still attributed to it."""


@dataclass
class Result:
    group: str
    name: str
    expected: str
    actual: str
    ok: bool | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Detection:
    machine: str
    kind: str
    start: datetime
    end: datetime
    detected_at: datetime | None
    by: str

    @property
    def ttd_s(self) -> float | None:
        return None if self.detected_at is None else max(0.0, (self.detected_at - self.start).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's ``detections[]`` entry (``start`` in RFC 3339)."""
        return {"machine": self.machine, "kind": self.kind, "start": rfc3339(self.start), "ttd_s": self.ttd_s,
                "by": self.by}


def _fmt(v: Any) -> str:
    """A measured or ledger value: 4 significant digits, without an exponent from 10,000 on."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)


def _plain(v: float) -> str:
    """A value the user wrote (``equals``), in full and without an exponent: ``100000``, ``0.62``."""
    text = format(Decimal(repr(float(v))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def rfc3339(ts: datetime) -> str:
    """``2026-11-23T00:04:00Z`` (fractional seconds only when there are some)."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _within(actual: Any, expected: Any, tol: float, relative: bool, kpi: str) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    if kpi in COUNTS and tol == 0:
        return bool(actual == expected)
    bound = tol * max(abs(float(expected)), 1e-9) if relative else tol
    return abs(float(actual) - float(expected)) <= bound + 1e-12


def kpi_results(scenario: Scenario, exp: Expectations, ledger: list[dict[str, Any]],
                report: dict[str, Any]) -> list[Result]:
    """Every KPI expectation, for every shift window of the report (one result each)."""
    prefix = f"{scenario.site}/{scenario.area}"
    wanted = exp.kpis
    if wanted is None:
        wanted = [KpiExpectation(scope=line.name, kpi=k) for line in scenario.lines
                  for k in DEFAULT_KPIS]
    truth: dict[tuple[str, str], dict[str, Any]] = {}
    for r in ledger:
        if r["type"] == "shift":
            truth[(r["machine"], r["shift"])] = r
        elif r["type"] == "line_shift":
            name = r["line"] if "/" in r["line"] else f"{prefix}/{r['line']}"
            truth[(name, r["shift"])] = r
    out: list[Result] = []
    if not report["windows"]:
        why = ("no shift window in the run: nothing to compare (the run lies outside the calendar's "
               "shifts; start it in a shift or play longer)")
        if exp.kpis is None:  # the default set, not written by the user: said, not failed
            return [Result("kpi", "KPIs of every line vs the ledger (default)", "(reported only)", "none",
                           None, why)]
        for e in wanted:
            tol, rel = e.bound()
            want = (f"{_plain(e.equals)} {_bound(tol, rel)} (fixed)" if e.equals is not None
                    else f"the ledger's value {_bound(tol, rel)} (ledger)")
            out.append(Result("kpi", f"{e.kpi} of {e.scope}", want, "none", False, why))
        return out
    for e in wanted:
        path = f"{prefix}/{e.scope}"
        tol, rel = e.bound()
        for w in report["windows"]:
            recs = {m["machine"]: m for m in w["machines"]} | {ln["line"]: ln for ln in w["lines"]}
            rec = recs.get(path)
            name = f"{e.kpi} of {e.scope} [{w['window']}]"
            bound = _bound(tol, rel)
            if rec is None:
                out.append(Result("kpi", name, "a KPI record", "none", False, f"no record for {path}"))
                continue
            expected = e.equals if e.equals is not None else truth.get((path, w["window"]), {}).get(e.kpi)
            if e.equals is None and (path, w["window"]) not in truth:
                out.append(Result("kpi", name, "ledger record", "none", False,
                                  f"the ledger has no record of {path} in {w['window']}"))
                continue
            actual = rec.get(e.kpi)
            ok = _within(actual, expected, tol, rel, e.kpi)
            want = (f"{_plain(e.equals)} {bound} (fixed)" if e.equals is not None
                    else f"{_fmt(expected)} {bound} (ledger)")
            out.append(Result("kpi", name, want, _fmt(actual), ok))
    return out


def _bound(tol: float, rel: bool) -> str:
    return f"±{_plain(round(tol * 100, 9))}%" if rel else (f"±{_plain(tol)}" if tol else "exact")


def detections(scenario: Scenario, ledger: list[dict[str, Any]], events: list[Event],
               flags_seen: dict[tuple[str, str, str], list[datetime]]) -> tuple[list[Detection], list[Event]]:
    """Each fault of the ledger with its first detection, and the anomaly episodes no fault explains.

    ``flags_seen``: ``(machine, flag kind, signal or "")`` -> the line times a data-quality flag
    was sighted (:attr:`~zhizao.stack.analytics.LiveAnalytics.flags_seen`: each new episode of it).
    A fault the flags see is detected by a sighting inside its own window (from its start to
    :data:`GRACE` after its end); each sighting detects one fault at most, so a second fault of the
    same kind on the same signal needs a sighting of its own (faults in order of start, each
    taking the earliest sighting left in its window)."""
    faults = [r for r in ledger if r["type"] == "fault"]
    episodes = sorted((e for e in events if e.source is EventSource.ANOMALY), key=lambda e: e.start)
    explained: set[str] = set()
    used: set[tuple[tuple[str, str, str], datetime]] = set()
    out: list[Detection | None] = [None] * len(faults)
    order = sorted(range(len(faults)), key=lambda i: parse_ts(faults[i]["start"]))
    for i in order:
        f = faults[i]
        start, end = parse_ts(f["start"]), parse_ts(f["end"])
        machine = f["machine"]
        if machine.count("/") != 3:
            machine = f"{scenario.site}/{scenario.area}/{machine}"
        hits: list[tuple[datetime, str]] = []
        for e in episodes:
            if e.asset == machine and start <= e.start <= end + GRACE:
                hits.append((_raised(e), f"anomaly event {e.id}"))
                explained.add(e.id)
            elif e.asset == machine and e.start < start and (e.end is None or e.end >= start):
                explained.add(e.id)  # an episode already open when the fault began is not a false alarm
        flag = FLAG_OF_FAULT.get(f["kind"])
        if flag is not None:
            signal = str(f.get("params", {}).get("signal", "")) if flag == "telemetry_gap" else ""
            sightings = sorted((seen, key) for key, times in flags_seen.items() for seen in times
                               if key[0] == machine and key[1] == flag and (not signal or key[2] == signal)
                               and start <= seen <= end + GRACE and (key, seen) not in used)
            if sightings:
                seen, key = sightings[0]
                used.add((key, seen))
                hits.append((seen, f"data-quality flag {flag}{':' + key[2] if key[2] else ''}"))
        first = min(hits, default=None)
        out[i] = Detection(machine, f["kind"], start, end, first[0] if first else None,
                           first[1] if first else "")
    false_alarms = [e for e in episodes if e.id not in explained]
    return [d for d in out if d is not None], false_alarms


def _raised(e: Event) -> datetime:
    """When the episode's alarm went out (``details["raised_at"]``, the tracker's on-delay after
    ``start``); ``start`` for an event that does not say."""
    raised = e.details.get(RAISED_AT)
    return parse_ts(raised) if isinstance(raised, str) else e.start


def fault_results(exp: Expectations, found: list[Detection], false_alarms: list[Event],
                  scenario: Scenario) -> list[Result]:
    prefix = f"{scenario.site}/{scenario.area}/"
    wanted = {(f"{prefix}{f.machine}", f.kind): f for f in exp.faults}
    out: list[Result] = []
    in_run = {(d.machine, d.kind) for d in found}
    for (machine, kind), fe in wanted.items():  # load_play refuses what it can tell from the file
        if (machine, kind) not in in_run:
            out.append(Result("fault", f"{kind} on {fe.machine}",
                              f"detected within {fe.detect_within_s / 60:g} min", "not in the run", False,
                              "the ledger has no such fault: it did not start before the run's end"))
    episodes = Counter((d.machine, d.kind) for d in found)
    for d in found:
        short = d.machine.removeprefix(prefix)
        e = wanted.get((d.machine, d.kind))
        ttd = d.ttd_s
        actual = "missed" if ttd is None else f"detected after {ttd / 60:.1f} min"
        name = f"{d.kind} on {short}"
        if episodes[d.machine, d.kind] > 1:  # one line (JUnit test case) per episode, told apart
            name += f" from {rfc3339(d.start)}"
        if e is None:
            out.append(Result("fault", name, "(reported only)", actual, None, d.by))
        else:
            ok = ttd is not None and ttd <= e.detect_within_s
            want = f"detected within {e.detect_within_s / 60:g} min"
            out.append(Result("fault", name, want, actual, ok, d.by))
    n = len(false_alarms)
    detail = ", ".join(f"{e.asset.removeprefix(prefix)} at {e.start:%H:%M:%S}" for e in false_alarms[:5])
    limit = exp.max_false_alarms
    out.append(Result("alarms", "false alarms (anomaly episodes no fault explains)",
                      "(reported only)" if limit is None else f"≤ {limit}", str(n),
                      None if limit is None else n <= limit, detail))
    return out


def completeness_results(exp: Expectations, served: Counter[tuple[str, str]],
                         stored: Counter[tuple[str, str]], unpublished: int = 0) -> list[Result]:
    """Samples served vs stored per series: lost (served, not stored) and extra (stored twice);
    ``unpublished``: MQTT messages the simulated machines could not hand to the broker (their
    parts are in the ledger, their data nowhere — the run cannot match the ledger then)."""
    lost = sum(max(0, n - stored.get(k, 0)) for k, n in served.items())
    extra = sum(max(0, n - served.get(k, 0)) for k, n in stored.items())
    worst = sorted(((n - stored.get(k, 0), k) for k, n in served.items() if n > stored.get(k, 0)),
                   reverse=True)
    detail = "; ".join(f"{a}/{s}: {m} lost" for m, (a, s) in worst[:3])
    total_served, total_stored = sum(served.values()), sum(stored.values())
    return [
        Result("data", "samples served → stored", f"{total_served}", f"{total_stored}",
               None, ""),
        Result("data", "samples lost", f"≤ {exp.max_lost_samples}", str(lost), lost <= exp.max_lost_samples,
               detail),
        Result("data", "samples stored twice or unexpected", "0", str(extra), extra == 0, ""),
        Result("data", "MQTT messages the simulator could not publish", "0", str(unpublished),
               unpublished == 0, "broker overloaded: lower --speed" if unpublished else ""),
    ]


__all__ = ["Detection", "Result", "completeness_results", "default_tolerance", "detections",
           "fault_results", "kpi_results"]
