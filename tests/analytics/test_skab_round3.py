"""Round 3's pre-registered selection (:mod:`analytics.skab.round3`): its grid, its rule and its
false-alarm proxy, which reads the anomaly-free file only (no protocol file, no label)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.errors import DataError
from analytics.skab import SIGNALS, TRAIN_ROWS, SkabResult, load_skab, preregistered, round3_config
from analytics.skab.frozen import FROZEN_REFRACTORY, ROUND3_CANDIDATE, round3_spec
from analytics.skab.metrics import OutlierMetrics
from analytics.skab.round2 import candidates as round2_candidates
from analytics.skab.round3 import (
    AF_WINDOW_ROWS,
    Round3Result,
    anomaly_free_windows,
    candidates,
    select3,
)
from analytics.skab.select import MAX_FAR
from tests.analytics.conftest import SKAB


def test_grid_extends_round2_in_its_order() -> None:
    cands = candidates()
    old = round2_candidates()
    assert len(cands) == 1728 and cands[:len(old)] == old
    assert len({c.name for c in cands}) == len(cands)
    assert {c.spec.threshold_factor for c in cands} == {1.0, 1.25, 1.5, 2.0, 2.5, 3.0}


def _r(f1: float, far: float, nab: float, af: float) -> Round3Result:
    return Round3Result(SkabResult("c", OutlierMetrics(f1, far, 0.0, 0, 0, 0, 0), {"standard": nab}), af)


def test_rule_needs_both_false_alarm_bounds() -> None:
    results = [_r(0.95, 5.0, 60, MAX_FAR + 0.01),  # best on the simulation, false alarms on the testbed
               _r(0.9, MAX_FAR + 0.01, 60, 1.0),  # the reverse
               _r(0.7, 10.0, 30, 10.0),
               _r(0.6, 5.0, 40, 2.0),
               _r(0.7, 1.0, 30, 1.0)]  # ties with index 2: the earlier wins
    assert select3(results) == 2
    # none eligible: the smallest of the larger FAR
    assert select3([_r(0.9, 30.0, 50, 14.0), _r(0.8, 15.0, 50, 20.0), _r(0.7, 16.0, 50, 16.0)]) == 2


def test_anomaly_free_windows_are_not_protocol_rows() -> None:
    windows = anomaly_free_windows(str(SKAB))
    assert len(windows) == 78 and all(len(w.ts) == AF_WINDOW_ROWS for w in windows)
    assert all(w.anomaly.sum() == 0 and w.changepoint.sum() == 0 for w in windows)
    assert windows[1].ts[0] == windows[0].ts[100]
    # no row of any protocol file is among them: the file's tail, which is other/5.csv's head, is cut
    files = load_skab(SKAB)
    seen = {tuple(r) for f in files for r in f.values}
    assert not any(tuple(r) in seen for w in windows for r in w.values)
    assert windows[-1].ts[-1] < min(f.ts[0] for f in files)
    assert all(w.values.shape[1] == files[0].values.shape[1] for w in windows)
    assert TRAIN_ROWS < AF_WINDOW_ROWS


@pytest.mark.parametrize("bad", ["missing", "columns"])
def test_anomaly_free_file_errors_name_the_file(tmp_path: Path, bad: str) -> None:
    root = tmp_path
    if bad == "columns":
        (root / "anomaly-free").mkdir()
        (root / "anomaly-free" / "anomaly-free.csv").write_text("datetime;Current\n2020-01-01 00:00:00;1\n")
    with pytest.raises(DataError, match=r"anomaly-free\.csv"):
        anomaly_free_windows(str(root))


def test_round3_settings_are_the_selections_choice() -> None:
    cfg = round3_config()
    assert cfg.signals == SIGNALS and cfg.refractory == FROZEN_REFRACTORY  # as rounds 1 and 2
    chosen = [c for c in candidates() if c.name == ROUND3_CANDIDATE]
    assert len(chosen) == 1 and chosen[0].spec == round3_spec() == cfg.model
    assert [c.name for c in preregistered()][2] == cfg.name
