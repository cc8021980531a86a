"""The demo-reference measurement of zhizao/stack/README.md runs and reports what it says."""

from __future__ import annotations

import json

import pytest

from zhizao.stack.demo_reference import main


def test_candidate_a_on_one_seed(capsys: pytest.CaptureFixture[str]) -> None:
    main(["A", "131"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["candidate"] == "A" and out["seeds"] == [131]
    assert out["machine_shifts"] == 4  # the demo line's four machines, one 8-h shift
    assert 0 < out["flagged"] <= out["faults"]
    assert len(out["missed"]) == out["faults"] - out["flagged"]
    assert set(out["false_alarms"]) == {"health", "energy"}
    assert out["max_per_machine_shift"] <= sum(out["false_alarms"].values())
