"""InfluxQL for the panels, following ingest's InfluxDB schema (``ingest/storage/README.md``).

Schema (one measurement per store, ``telemetry`` by default): tags ``site``, ``area``, ``line``,
``machine`` (the asset path levels) and ``signal``; numbers and booleans in the float field
``value``, strings in the field ``value_str``. Every query is written here, in one place, so a
schema change is one edit.

Grafana macros used: ``$timeFilter``, ``$__interval``; template variables ``$site``, ``$line``,
``$machine`` (regex-matched so *All* and multi-select work) and ``$agent`` on the fleet board.
:func:`resolve` substitutes them for tests and ``zhizao dashboards check --influx-url``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

MEASUREMENT: Final = "telemetry"
KPI_MEASUREMENT: Final = "zhizao_kpi"
"""Derived series the KPI feed writes (``kpi.*``, ``anomaly.contrib.*``): same tags and fields as
``telemetry`` but kept apart, so the KPI engine never reads its own output as machine telemetry."""
FIELD_NUM: Final = "value"
FIELD_STR: Final = "value_str"
LINE_MACHINE: Final = "line"
"""Machine segment of the pseudo-asset ``<site>/<area>/<line>/line`` carrying line-level KPIs."""
FLEET_AREA: Final = "fleet"
"""Area of the edge fleet's own health samples: ``<site>/fleet/<agents|gateways>/<id>``."""

SITE: Final = '"site" =~ /^$site$/'
LINE: Final = '"line" =~ /^$line$/'
MACHINE: Final = '"machine" =~ /^$machine$/'
MACHINES: Final = f"{SITE} AND {LINE} AND {MACHINE} AND \"machine\" != '{LINE_MACHINE}'"
LINES: Final = f"{SITE} AND {LINE} AND \"machine\" = '{LINE_MACHINE}'"
FLEET: Final = f"{SITE} AND \"area\" = '{FLEET_AREA}' AND \"machine\" =~ /^$agent$/"


def sig(name: str) -> str:
    """``"signal" = 'name'``."""
    return f"\"signal\" = '{name}'"


def sig_re(pattern: str) -> str:
    """``"signal" =~ /pattern/`` (``pattern`` is an anchored regex)."""
    return f'"signal" =~ /{pattern}/'


def measurement_for(where: str) -> str:
    """:data:`KPI_MEASUREMENT` when the condition selects derived signals (``kpi.*``,
    ``anomaly.contrib.*``), else :data:`MEASUREMENT`."""
    derived = ("'kpi.", "^kpi\\.", "'anomaly.contrib.", "^anomaly\\.contrib\\.")
    return KPI_MEASUREMENT if any(d in where for d in derived) else MEASUREMENT


def series(
    agg: str, where: str, by: Sequence[str] = ("machine",), *, field_name: str = FIELD_NUM,
    fill: str = "none", interval: str = "$__interval",
) -> str:
    """A bucketed time series: ``SELECT agg(field) ... GROUP BY time(interval), tags fill(...)``."""
    group = ", ".join([f"time({interval})", *(f'"{t}"' for t in by)])
    return (f'SELECT {agg}("{field_name}") AS "value" FROM "{measurement_for(where)}" WHERE {where} '
            f"AND $timeFilter GROUP BY {group} fill({fill})")


def latest(where: str, by: Sequence[str] = ("machine",), *, field_name: str = FIELD_NUM) -> str:
    """The last value in the time range per tag group (stat, gauge, bar gauge and table panels)."""
    group = f" GROUP BY {', '.join(f'{chr(34)}{t}{chr(34)}' for t in by)}" if by else ""
    return (f'SELECT last("{field_name}") AS "value" FROM "{measurement_for(where)}" WHERE {where} '
            f"AND $timeFilter{group}")


def counter_increase(where: str, by: Sequence[str] = ("machine",)) -> str:
    """Increase of a monotonic counter (kWh, parts) over the range per group, right across counter
    resets and rollovers: the sum of the non-negative differences between consecutive samples of
    each series (``non_negative_difference`` in a subquery grouped by every tag, so two series never
    mix), a negative step — the counter restarting — being dropped.

    Exact limits: what is not counted is (1) the growth between the last sample before a reset or
    rollover and the first sample after it (one sample interval per reset; a reset inside a gap in
    the data loses the whole gap), (2) the growth from the range start to the first sample in the
    range and (3) from the last sample to the range end — so at most three sample intervals at the
    machine's peak rate when the range holds one reset. A downward jitter of the counter is counted
    again when it recovers. Any dashboard range works (not only the current shift, as the KPI
    feed's reset-proof ``kpi.shift.*`` totals). ``max - min`` (``spread``) was wrong after a reset:
    the run before the reset and the run after it overlap in value."""
    group = ", ".join(f'"{t}"' for t in by)
    inner = (f'SELECT non_negative_difference("{FIELD_NUM}") AS "value" FROM "{MEASUREMENT}" WHERE {where} '
             f"AND $timeFilter GROUP BY *")
    return f'SELECT sum("value") AS "value" FROM ({inner}) WHERE $timeFilter GROUP BY {group}'


def tag_values(key: str, where: str = "") -> str:
    """A template variable query: ``SHOW TAG VALUES FROM telemetry WITH KEY = key [WHERE ...]``."""
    cond = f" WHERE {where}" if where else ""
    return f'SHOW TAG VALUES FROM "{MEASUREMENT}" WITH KEY = "{key}"{cond}'


@dataclass(frozen=True, slots=True)
class Resolution:
    """Values to substitute for Grafana's macros and variables (see :func:`resolve`)."""

    start: datetime
    end: datetime
    variables: Mapping[str, str]
    interval: str = "1m"


_VAR_RE: Final = re.compile(r"\$(\w+)")


def resolve(query: str, r: Resolution) -> str:
    """``query`` as Grafana would send it: ``$timeFilter`` becomes the absolute range, ``$__interval``
    the interval, ``$name`` the variable's value (regex-escaped, as Grafana does inside ``/.../``).

    Raises ``KeyError`` naming an unknown variable, so a typo in a board fails the check.
    """
    time_filter = f"time >= '{_rfc3339(r.start)}' AND time < '{_rfc3339(r.end)}'"
    text = query.replace("$timeFilter", time_filter).replace("$__interval", r.interval)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in r.variables:
            raise KeyError(f"query uses ${name}, which has no value: {query}")
        return re.escape(r.variables[name])

    return _VAR_RE.sub(sub, text)


def _rfc3339(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


EVENTS_MEASUREMENT: Final = "zhizao_events"
"""ingest's events: tags ``source``, ``asset`` (the full path), ``rule``; fields ``id``, ``state``,
``doc`` (the event as JSON), ``updated``; time = the event's start. An upsert overwrites the point."""
CONTRIB_PREFIX: Final = "anomaly.contrib."
"""Signals ``anomaly.contrib.<signal>`` (0..1 share of the score), mirrored from anomaly events."""
_EVENT_LINE: Final = r'"asset" =~ /^$site\/[^\/]+\/$line(\/|$)/'
_EVENT_MACHINE: Final = r'"asset" =~ /^$site\/[^\/]+\/$line\/$machine$/'


def open_events() -> str:
    """Events open *now* (KPI alerts, anomaly episodes) of the selected site and lines, as a table,
    whenever they started (up to 30 days back) — not only those started in the dashboard's range.
    An upsert overwrites the event's point, so ``state`` is its current state."""
    return (f'SELECT "id", "rule", "source", "asset" FROM "{EVENTS_MEASUREMENT}" '
            f"WHERE {_EVENT_LINE} AND \"state\" = 'open' AND time > now() - 30d")


def contributors() -> str:
    """Latest share of each contributing signal in the anomaly score of the selected machines."""
    return (f'SELECT last("{FIELD_NUM}") AS "share" FROM "{KPI_MEASUREMENT}" WHERE {MACHINES} '
            f'AND {sig_re("^" + re.escape(CONTRIB_PREFIX))} AND $timeFilter GROUP BY "machine", "signal"')


def event_annotations() -> str:
    """Events of the selected machines as annotations (text = event id, tags = rule)."""
    return f'SELECT "id", "rule" FROM "{EVENTS_MEASUREMENT}" WHERE {_EVENT_MACHINE} AND $timeFilter'
