"""KPI reports: machine records per window, aggregated to lines and to the whole scope.

Line and scope records follow the shared definitions: sums of times, counts and energy, with
A, P, Q, OEE (and every other ratio) computed from the sums, never averaged. Times, counts and
stops are summed over producing machines only (those with ideal cycle times); utilities such as
compressors add their energy and cost but stay out of A, P, OEE, MTBF and MTTR.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from analytics.kpi.config import DataQualityConfig
from analytics.kpi.engine import Window, prepare, summed_peak_kw
from analytics.kpi.record import Totals, derive
from analytics.kpi.series import MachineData
from analytics.kpi.windows import GroupBy
from zhizao.model import AssetPath
from zhizao.plant import PlantConfig
from zhizao.wire import format_ts


def _ts(x: float) -> str:
    return format_ts(datetime.fromtimestamp(x, UTC))


def line_of(asset: str) -> str:
    try:
        return AssetPath.parse(asset).line_path
    except ValueError:
        return asset.rsplit("/", 1)[0]


def build_report(machines: dict[str, MachineData], windows: list[Window], plant: PlantConfig,
                 dq: DataQualityConfig, *, scope: str, group_by: GroupBy) -> dict[str, Any]:
    """The KPI report of ``scope``: for each window, every machine, every line and the scope total.

    Machines the plant file lists under the scope but that sent no data still get a record
    (with a ``no_data`` flag), so a silent machine is visible instead of missing. A machine record
    says whether the machine makes parts (``producing``): a utility's Performance, Quality and OEE
    (:data:`~analytics.kpi.record.PRODUCTION_RATIOS`) follow the definitions (0, 1, 0) but mean
    nothing, and readers show them as not applicable; its throughput and speed/defect losses
    (:data:`~analytics.kpi.record.NOT_APPLICABLE_TO_UTILITIES`) are ``None``."""
    names = set(machines) | {m.asset for m in plant.machines if under(m.asset, scope)}
    data = {a: machines.get(a, MachineData(a)) for a in names}
    prepared = prepare(data, plant, dq)
    per_machine = {a: [p.window(w, plant) for w in windows] for a, p in prepared.items()}
    currency = plant.tariff.currency
    out_windows: list[dict[str, Any]] = []
    for k, w in enumerate(windows):
        lines: dict[str, Totals] = {}
        total = Totals()
        mrecs: list[dict[str, Any]] = []
        for asset in sorted(per_machine):
            t = per_machine[asset][k]
            producing = _producing(plant, asset)
            rec = derive(t, currency, producing=producing)
            mrecs.append({"machine": asset, "producing": producing, **rec})
            lines.setdefault(line_of(asset), Totals()).add(t, producing=producing)
            total.add(t, producing=producing)
        out_windows.append({
            "window": w.id, "start": _ts(w.start), "end": _ts(w.end),
            "planned_time_s": sum(b - a for a, b in w.planned),
            "machines": mrecs,
            "lines": [{"line": ln, **derive(lt, currency),
                       "peak_kw": summed_peak_kw([p for a, p in prepared.items() if line_of(a) == ln], w)}
                      for ln, lt in sorted(lines.items())],
            "total": {**derive(total, currency), "peak_kw": summed_peak_kw(list(prepared.values()), w)},
        })
    return {"scope": scope, "group_by": group_by.value, "windows": out_windows}


def _producing(plant: PlantConfig, asset: str) -> bool:
    """A machine makes parts unless the plant file lists it without ideal cycle times
    (utilities such as compressors); an unlisted machine is taken as producing."""
    spec = plant.machine(asset)
    return spec is None or bool(spec.ideal_cycle_time_s)


def under(asset: str, scope: str) -> bool:
    return scope in ("", "*") or asset == scope or asset.startswith(scope.rstrip("/") + "/")
