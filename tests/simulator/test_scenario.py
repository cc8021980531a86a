"""Scenario files: the examples are valid and complete; mistakes are reported by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator import load_scenario, scenario_from_dict
from simulator.faults import DEFAULT_PARAMS
from simulator.scenario import FAULT_KINDS
from zhizao.config import read_document
from zhizao.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_workshop_has_two_lines_four_kinds_eight_machines_and_every_fault_kind() -> None:
    sc = load_scenario(EXAMPLES / "workshop.toml")
    assert (sc.site, sc.area) == ("plant1", "a1")
    assert len(sc.lines) == 2
    machines = sc.machines()
    assert len(machines) >= 8
    assert {m.kind for _, m in machines} == {"cnc", "injection_moulding", "compressor", "assembly"}
    assert {f.kind for f in sc.faults} == set(FAULT_KINDS) == set(DEFAULT_PARAMS)
    assert any(s.breaks for s in sc.calendar.shifts)
    assert {m.mqtt.vendor for _, m in machines if m.mqtt} == {"acme", "brightline"}


def test_improved_is_the_workshop_without_the_air_leak_and_with_shorter_setups() -> None:
    w = load_scenario(EXAMPLES / "workshop.toml")
    i = load_scenario(EXAMPLES / "improved.toml")
    assert [str(a) for a, _ in w.machines()] == [str(a) for a, _ in i.machines()]
    assert "air_leak" in {f.kind for f in w.faults} and "air_leak" not in {f.kind for f in i.faults}
    for (_, mw), (_, mi) in zip(w.machines(), i.machines(), strict=True):
        if mw.products and len(mw.products) > 1:
            assert mi.setup_s < mw.setup_s


def test_compact_example_loads() -> None:
    assert load_scenario(EXAMPLES / "compact.yaml").name == "compact"


def _doc() -> dict[str, Any]:
    return read_document(EXAMPLES / "compact.yaml")


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (lambda d: d["lines"][0]["machines"][0].update(kind="lathe"), "lines[0].machines[0].kind", "lathe"),
        (
            lambda d: d["lines"][0]["machines"][0].update(spindle=1),
            "lines[0].machines[0].spindle",
            "unknown key",
        ),
        (lambda d: d.update(tick_s=7), "tick_s", "divide 60"),
        (lambda d: d["faults"][0].update(machine="line9/x"), "<root>", "faults[0].machine"),
        (lambda d: d["faults"][0]["params"].update(signal="nope"), "<root>", "params.signal"),
        (lambda d: d["faults"][0].update(kind="air_leak"), "<root>", "cannot have a air_leak"),
        (lambda d: d.update(start="2026-11-23T08:00:00"), "start", "UTC offset"),
        (lambda d: d.update(start="2026-11-23T08:00:03+08:00", tick_s=2), "<root>", "tick grid"),
    ],
)
def test_mistakes_are_reported_with_their_key(mutate: Any, key: str, words: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(ConfigError) as err:
        scenario_from_dict(doc)
    text = str(err.value)
    assert key in text or key == "<root>"
    assert words in text
