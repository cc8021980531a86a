"""A small typed builder for Grafana dashboard JSON (schema version 39, Grafana 10/11).

Dashboards are described with these dataclasses and serialised with :meth:`Dashboard.to_json`;
nothing is hand-edited JSON. Panel ids are assigned in order (1, 2, ...) and panels are laid out
left to right on Grafana's 24-column grid, wrapping to a new row when a panel does not fit, so a
board is just a list of panels with widths and heights.

Every query panel references the one datasource :data:`DATASOURCE` (uid ``zhizao-influxdb``,
InfluxQL), which ``dashboards/provisioning/datasources/zhizao.yaml`` and ``zhizao dashboards push``
create with that uid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

SCHEMA_VERSION: Final = 39
GRID_COLUMNS: Final = 24
DATASOURCE_UID: Final = "zhizao-influxdb"
DATASOURCE: Final[dict[str, str]] = {"type": "influxdb", "uid": DATASOURCE_UID}

PanelType = Literal["timeseries", "stat", "gauge", "bargauge", "state-timeline", "table", "barchart"]
ResultFormat = Literal["time_series", "table"]


@dataclass(frozen=True, slots=True)
class Threshold:
    """A colour step: from ``value`` upwards (``None`` = the base step) the colour is ``color``."""

    value: float | None
    color: str

    def to_json(self) -> dict[str, Any]:
        return {"color": self.color, "value": self.value}


@dataclass(frozen=True, slots=True)
class Target:
    """One raw InfluxQL query of a panel. ``alias`` is Grafana's legend pattern (``$tag_machine``)."""

    query: str
    alias: str = ""
    result_format: ResultFormat = "time_series"

    def to_json(self, ref_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "datasource": dict(DATASOURCE),
            "refId": ref_id,
            "rawQuery": True,
            "query": self.query,
            "resultFormat": self.result_format,
        }
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(frozen=True, slots=True)
class ValueMapping:
    """Text value ``text`` shown as ``display`` in ``color`` (state names, booleans)."""

    text: str
    color: str
    display: str = ""

    def to_json(self, index: int) -> dict[str, Any]:
        return {"color": self.color, "index": index, "text": self.display or self.text}


@dataclass(slots=True)
class Panel:
    """A query panel. ``unit`` is a Grafana unit id (``percentunit``, ``kwatt``, ``kwatth``,
    ``short``, ``s``, ``none``...); ``thresholds`` are colour steps (first one ``value=None``)."""

    title: str
    type: PanelType
    targets: list[Target]
    unit: str
    width: int = 12
    height: int = 8
    description: str = ""
    thresholds: list[Threshold] = field(default_factory=lambda: [Threshold(None, "green")])
    threshold_style: Literal["off", "line", "area", "line+area"] = "off"
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    mappings: list[ValueMapping] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    transformations: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "unit": self.unit,
            "thresholds": {"mode": "absolute", "steps": [t.to_json() for t in self.thresholds]},
            "color": {"mode": "thresholds" if self.type in ("stat", "gauge", "bargauge")
                      else "palette-classic"},
        }
        if self.type == "timeseries":
            defaults["custom"] = {"thresholdsStyle": {"mode": self.threshold_style}, "spanNulls": True}
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.mappings:
            defaults["mappings"] = [
                {"type": "value", "options": {m.text: m.to_json(i) for i, m in enumerate(self.mappings)}}
            ]
            if self.type == "state-timeline":
                defaults["color"] = {"mode": "thresholds"}
        out: dict[str, Any] = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": dict(self.options),
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
        }
        if self.transformations:
            out["transformations"] = list(self.transformations)
        return out


@dataclass(frozen=True, slots=True)
class Variable:
    """A query template variable (``$site``): values from an InfluxQL ``SHOW TAG VALUES`` query.

    ``include_all`` adds *All*, whose value is the regex ``.*`` so ``=~ /^$var$/`` matches every value.
    """

    name: str
    label: str
    query: str
    multi: bool = False
    include_all: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": dict(DATASOURCE),
            "query": self.query,
            "definition": self.query,
            "refresh": 1,
            "multi": self.multi,
            "includeAll": self.include_all,
            "allValue": ".*" if self.include_all else None,
            "sort": 1,
            "current": {},
            "options": [],
            "hide": 0,
        }


@dataclass(frozen=True, slots=True)
class Annotation:
    """Events drawn on time series: an InfluxQL query whose rows become annotations."""

    name: str
    query: str
    color: str = "red"
    text_column: str = "id"
    tags_column: str = "rule"

    def to_json(self) -> dict[str, Any]:
        """Both shapes Grafana reads: the legacy top-level ``query`` and the 10.x+ ``target``."""
        return {
            "name": self.name,
            "datasource": dict(DATASOURCE),
            "enable": True,
            "iconColor": self.color,
            "query": self.query,
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
            "target": {"refId": "Anno", "rawQuery": True, "query": self.query, "fromAnnotations": True,
                       "textColumn": self.text_column, "tagsColumn": self.tags_column},
        }


@dataclass(slots=True)
class Dashboard:
    """A dashboard: a stable ``uid`` (URL and idempotent pushes), variables, annotations, panels."""

    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: list[Variable] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    tags: list[str] = field(default_factory=lambda: ["zhizao"])
    time_from: str = "now-8h"
    refresh: str = "30s"

    def layout(self) -> list[tuple[Panel, int, int]]:
        """Each panel with its grid position (x, y): left to right, wrapping at 24 columns."""
        placed: list[tuple[Panel, int, int]] = []
        x = y = row_height = 0
        for panel in self.panels:
            if panel.width > GRID_COLUMNS:
                raise ValueError(f"panel {panel.title!r} is wider than {GRID_COLUMNS} columns")
            if x + panel.width > GRID_COLUMNS:
                x, y, row_height = 0, y + row_height, 0
            placed.append((panel, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return placed

    def to_json(self) -> dict[str, Any]:
        builtin = {
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard",
        }
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "timezone": "browser",
            "time": {"from": self.time_from, "to": "now"},
            "refresh": self.refresh,
            "templating": {"list": [v.to_json() for v in self.variables]},
            "annotations": {"list": [builtin, *(a.to_json() for a in self.annotations)]},
            "panels": [p.to_json(i, x, y) for i, (p, x, y) in enumerate(self.layout(), start=1)],
        }
