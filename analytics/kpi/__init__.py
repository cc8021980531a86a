"""Production KPIs: OEE (A x P x Q), energy, quality, reliability, throughput, data quality.

Definitions and formulas: ``analytics/kpi/README.md``.
"""

from analytics.kpi.config import KpiConfig, Targets, load_kpi_config
from analytics.kpi.engine import KPI_SIGNALS, Window, compute
from analytics.kpi.report import build_report
from analytics.kpi.windows import GroupBy, make_windows

__all__ = ["KPI_SIGNALS", "GroupBy", "KpiConfig", "Targets", "Window", "build_report", "compute",
           "load_kpi_config", "make_windows"]
