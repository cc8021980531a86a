"""The demo's live status panel in a narrow terminal: nothing cut off with an ellipsis."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any, cast

import pytest
from rich.console import Console

from zhizao.stack.status import status_table


def _line() -> Any:
    run = Path("/home/engineer/zhizao-data/20261124T061500Z")
    return NS(
        options=NS(scenario=NS(name="demo", machines=lambda: [1, 2, 3, 4],
                               start=datetime(2026, 11, 23, tzinfo=UTC)),
                   data_dir=run, duration_s=86400.0, speed=30.0),
        sim=NS(endpoint="opc.tcp://127.0.0.1:4840/zhizao/sim", mqtt_published=123456, mqtt_dropped=0,
               ticks_done=98765, lag_s=0.0),
        broker=NS(url="mqtt://127.0.0.1:18830"),
        agent=NS(buffer_path=run / "agent" / "agent-buffer.sqlite", samples_read=18_774_123, backlog=123456,
                 forwarder=NS(stats=NS(sent_samples=18_774_000))),
        ingest=NS(url="http://127.0.0.1:8080"),
        analytics=NS(scoring={"m": 1, "m#energy": 2}, stats=NS(scored_rows=1_234_567, events=12, episodes=5)),
        sim_now=lambda: datetime(2026, 11, 23, 22, 17, 5, tzinfo=UTC),
    )


@pytest.mark.parametrize("width", [80, 160])
def test_every_figure_shows_whole_in_a_narrow_terminal(width: int) -> None:
    console = Console(width=width, record=True, force_terminal=False)
    console.print(status_table(cast(Any, _line()), "http://127.0.0.1:8080/", "running"))
    text = console.export_text()
    assert "…" not in text, text
    for figure in ("22:17:05", "98765", "123456", "18.8M", "1.23M", "1337.1 of 1440 simulated minutes"):
        assert figure in text, text
    squeezed = "".join(ch for ch in text if ch not in "│ \n")  # a long path wraps, whole
    assert "/home/engineer/zhizao-data/20261124T061500Z/agent/agent-buffer.sqlite" in squeezed
