"""The plant description (``zhizao.plant.PlantConfig``) of a scenario, for the KPI code.

``zhizao sim export-plant --scenario F --out plant.toml`` writes it; the KPI code loads it with
``load_config(PlantConfig, path)``. Machine kinds that make no parts (compressors) are listed with
no ideal cycle times.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulator.scenario import Scenario
from zhizao.plant import MachineSpec, PlantConfig


def plant_config(scenario: Scenario) -> PlantConfig:
    machines = [
        MachineSpec(
            asset=str(asset),
            kind=m.kind,
            ideal_cycle_time_s={p.name: p.ideal_cycle_time_s for p in m.products},
        )
        for asset, m in scenario.machines()
    ]
    return PlantConfig(calendar=scenario.calendar, machines=machines, tariff=scenario.tariff)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_scalar(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _table(doc: dict[str, Any], prefix: str, lines: list[str]) -> None:
    subtables: list[tuple[str, Any]] = []
    for k, v in doc.items():
        if v is None:
            continue
        if (
            (isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()))
            or (isinstance(v, dict) and prefix == "" and v)
        ) or (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)):
            subtables.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_scalar(v)}")
    for k, v in subtables:
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        if isinstance(v, dict):
            lines.append(f"\n[{name}]")
            _table(v, name, lines)
        else:
            for item in v:
                lines.append(f"\n[[{name}]]")
                _table(item, name, lines)


def dumps_toml(doc: dict[str, Any]) -> str:
    """A small TOML writer for JSON-like documents (tables, arrays of tables, scalars)."""
    lines: list[str] = []
    _table(doc, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def export_plant(scenario: Scenario, out: str | Path) -> PlantConfig:
    """Write the scenario's plant description to ``out`` (.toml, or .yaml/.json by suffix)."""
    plant = plant_config(scenario)
    doc = plant.model_dump(mode="json")
    path = Path(out)
    header = f"# Plant description exported from simulator scenario {scenario.name!r}\n"
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    elif path.suffix.lower() == ".json":
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        path.write_text(header + dumps_toml(doc), encoding="utf-8")
    return plant
