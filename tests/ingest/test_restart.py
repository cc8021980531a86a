"""A real ingest process killed with SIGKILL between two identical posts stores the batch once,
and its catalogue is rebuilt after the crash."""

from __future__ import annotations

from pathlib import Path

import httpx

from ingest.testing import IngestProcess
from tests.ingest.helpers import batch, post, stored_count


def test_kill_9_between_identical_posts_stores_batch_once(tmp_path: Path) -> None:
    config = tmp_path / "ingest.toml"
    config.write_text(
        f'[storage.duckdb]\npath = "{tmp_path / "z.duckdb"}"\n'
        f'[auth]\nenabled = false\ntokens_file = "{tmp_path / "tokens.json"}"\n')
    proc = IngestProcess(config)
    proc.start()
    try:
        with httpx.Client(base_url=proc.url, timeout=10) as c:
            first = post(c, batch("b-42", n=100))
            assert first.status_code == 200 and first.json()["duplicate"] is False
        proc.kill()
        proc.start()
        with httpx.Client(base_url=proc.url, timeout=10) as c:
            again = post(c, batch("b-42", n=100))
            assert again.status_code == 200, again.text
            assert again.json()["duplicate"] is True and again.json()["accepted"] == 100
            assert stored_count(c) == 100
            # the catalogue (upserted lazily) is rebuilt after the crash
            cat = c.get("/api/v1/catalogue").json()
            signals = [(x["asset"], x["signal"]) for x in cat["signals"]]
            assert signals == [("plant/a1/line1/cnc-1", "power_kw")]
            assert post(c, batch("b-43", n=100)).json()["duplicate"] is False
            assert stored_count(c) == 200
    finally:
        proc.kill()
