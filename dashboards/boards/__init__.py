"""The five zhizao dashboards, one module each; :data:`BOARDS` lists their builders in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from dashboards.boards.edge_fleet import edge_fleet
from dashboards.boards.energy import energy
from dashboards.boards.machine_detail import machine_detail
from dashboards.boards.plant_overview import plant_overview
from dashboards.boards.quality import quality
from dashboards.grafana import Dashboard

BOARDS: Final[tuple[Callable[[], Dashboard], ...]] = (
    plant_overview, machine_detail, energy, quality, edge_fleet,
)

__all__ = ["BOARDS", "edge_fleet", "energy", "machine_detail", "plant_overview", "quality"]
