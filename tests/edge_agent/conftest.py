"""Fixtures of the edge agent tests: a real HTTP receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.edge_agent.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver speaking ingest's batch API (stop()/start() for outages)."""
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()
