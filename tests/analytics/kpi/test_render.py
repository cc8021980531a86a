"""The KPI table as the CLI prints it: not-applicable KPIs of utilities, no repeated rows, the
console's width."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest

from analytics.kpi.config import DataQualityConfig
from analytics.kpi.render import render
from analytics.kpi.report import build_report
from analytics.kpi.series import from_samples
from analytics.kpi.windows import GroupBy, make_windows
from tests.analytics.kpi.test_applicability import COMP, _with_compressor
from tests.analytics.kpi.test_engine import PLANT, T0, _shift
from zhizao.model import AssetPath, Sample
from zhizao.plant import PlantConfig


def _table(samples: list[Sample], plant: PlantConfig, scope: str, width: int = 220) -> str:
    w = make_windows(plant.calendar, T0, T0 + timedelta(hours=1), GroupBy.SHIFT)
    rep = build_report(from_samples(samples), w, plant, DataQualityConfig(), scope=scope,
                       group_by=GroupBy.SHIFT)
    from rich.console import Console

    out = io.StringIO()
    render(rep, Console(file=out, width=width, color_system=None))
    return out.getvalue()


def _cells(text: str, label: str) -> list[str]:
    bar = "┃" if label == "asset" else "│"  # the header's bars are heavy
    (row,) = [ln for ln in text.splitlines() if ln.startswith(f"{bar} {label} ")]
    return [c.strip() for c in row.strip(bar).split(bar)]


def test_a_compressor_shows_not_applicable_for_p_q_oee() -> None:
    samples, plant = _with_compressor()
    text = _table(samples, plant, "p")
    header = _cells(text, "asset")
    comp = dict(zip(header, _cells(text, COMP), strict=True))
    m1 = dict(zip(header, _cells(text, "p/a/l/m1"), strict=True))
    assert (comp["P"], comp["Q"], comp["OEE"]) == ("–", "–", "–")
    assert comp["A"] != "–" and m1["P"] != "–" and m1["OEE"] == "0.117"


def _two_lines() -> tuple[list[Sample], PlantConfig]:
    doc = PLANT.model_dump(mode="json")
    other = "p/a/l2/m2"
    plant = PlantConfig.model_validate({**doc, "machines": [*doc["machines"],
                                                            {**doc["machines"][0], "asset": other}]})
    samples = _shift()
    return samples + [Sample(AssetPath.parse(other), s.signal, s.ts, s.value) for s in samples], plant


@pytest.mark.parametrize("case, scope, rows", [
    ("one machine", "p/a/l/m1", ["p/a/l/m1"]),
    ("one line of two", "p/a/l", [COMP, "p/a/l/m1", "p/a/l (total)"]),
    ("two lines of one", "p", ["p/a/l/m1", "p/a/l2/m2", "TOTAL"]),
])
def test_no_row_repeats_another(case: str, scope: str, rows: list[str]) -> None:
    samples, plant = _two_lines() if case == "two lines of one" else _with_compressor()
    samples = [s for s in samples if str(s.asset).startswith(scope)]  # as the store is asked
    text = _table(samples, plant, scope)
    labels = [ln.strip("│ ").split(" │")[0].strip() for ln in text.splitlines() if ln.startswith("│ ")]
    assert labels == rows


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_console_leaving_out_columns_it_names(width: int) -> None:
    samples, plant = _with_compressor()
    text = _table(samples, plant, "p", width=width)
    assert max(len(ln) for ln in text.splitlines()) <= width
    header = _cells(text, "asset")
    assert {"OEE", "good", "kWh/good", "data quality"} <= set(header)
    assert "left out to fit" in text and "cost" not in header


def test_cli_tables_follow_columns(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Any) -> None:
    """``zhizao analytics kpi`` measures the console (``COLUMNS``) instead of a fixed 220."""
    from analytics.kpi import cli

    monkeypatch.setenv("COLUMNS", "80")
    assert cli._console().width == 80
    monkeypatch.delenv("COLUMNS")
    assert cli._console().width == cli.PIPED_WIDTH  # pytest's stdout is not a terminal
