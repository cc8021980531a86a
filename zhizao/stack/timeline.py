"""Placing a simulated run in time for the demo: whole days back, so the run ends in the past.

The web dashboard shows the newest data when it is older than the present ("data up to ..."),
but cannot show data stamped in the future; a run at ``speed`` 30 outruns the wall clock at once.
:func:`rebase` moves the scenario's ``start`` (and faults given as absolute times) back by whole
days — the shift calendar stays aligned — until ``start + duration_s <= now``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from simulator.scenario import Scenario

DAY = timedelta(days=1)


def rebase(scenario: Scenario, duration_s: float, now: datetime) -> Scenario:
    """``scenario`` moved by whole days (back or forward) to the latest start whose run ends by ``now``."""
    end = scenario.start + timedelta(seconds=duration_s)
    days = math.floor((now - end) / DAY)
    if days == 0:
        return scenario
    shift = DAY * days
    faults = [f.model_copy(update={"at": f.at + shift}) if isinstance(f.at, datetime) else f
              for f in scenario.faults]
    return scenario.model_copy(update={"start": scenario.start + shift, "faults": faults})
