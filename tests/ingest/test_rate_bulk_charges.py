"""Review 57: a bulk request's charge was taken on the per-producer *sum* (capped at the burst) but
refunded per line (each capped at the burst on its own), so duplicate lines gave back more than the
request took: new lines in the same request were stored for free. And a batch larger than the burst
took only the burst, so a producer sending large batches stored ``n / burst`` times its rate.

Now every sample is taken (a full bucket admits a batch larger than the burst, which leaves a debt
repaid at the refill rate) and each line's refund gives back exactly what that line was charged.
Over a real uvicorn + DuckDB ingest."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from ingest.app import create_app
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import batch, post, stored_count
from zhizao.wire import encode_batch

NDJSON = {"content-type": "application/x-ndjson"}


def test_duplicate_lines_in_a_bulk_do_not_pay_for_the_new_ones(tmp_path: Path) -> None:
    """Burst 20 samples, refill 0.01 samples/s (the limiter's clock moved on once, to start with a
    full bucket after the first batch)."""
    settings = server_settings(tmp_path)
    settings.limits.rate_samples_per_s = 0.01
    settings.limits.rate_burst_samples = 20
    app = create_app(settings)
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert post(c, batch("old", n=20, signal="s_old")).status_code == 200  # paid: bucket empty
        limiter = app.state.service.limiter
        offset = 1e6
        limiter.clock = lambda: time.monotonic() + offset  # refilled: a full bucket of 20
        statuses = []
        for k in range(5):  # each request: the stored batch again (a resend) + 20 new samples
            body = b"\n".join(encode_batch(b) for b in (batch("old", n=20, signal="s_old"),
                                                        batch(f"new-{k}", n=20, signal=f"s_{k}")))
            r = c.post("/api/v1/batches/bulk", content=body, headers=NDJSON)
            statuses.append(r.status_code)
        stored_new = stored_count(c) - 20
        # 20 tokens, refilled 0.01/s: only ONE new 20-sample batch can be paid for
        assert stored_new <= 20, (f"{stored_new} new samples stored with a burst of 20 and no refill; "
                                  f"statuses {statuses}; bucket now {limiter.level('agent-1')}")
        # the first request takes 40 (a debt of 20), its resent line gives back its own 20: empty
        assert statuses == [200, 429, 429, 429, 429], statuses
        assert 0.0 <= limiter.level("agent-1") < 1.0


def test_a_batch_larger_than_the_burst_pays_for_every_sample(tmp_path: Path) -> None:
    """The service docstring says each stored sample is paid exactly once; a batch of n > burst
    samples took only ``burst`` tokens, so a producer sending large batches stored n/burst times
    its rate. burst 20, rate 1/s (the limiter's clock moved by hand), a batch of 100 every 20 s.

    Review 57 asserted at most 20 + 40 samples stored in the first 40 s (t = 0, 20, 40); the fix
    the brief asked for admits a batch larger than the burst on a full bucket (else such a batch
    could never be stored), so that bound cannot hold for n = 100: the first batch is stored whole
    and the bound over T seconds is n + rate·T (burst + rate·T, plus the debt n − burst). Asserted
    instead: exactly one of the first three batches (the old code: all three, 300 samples), the
    debt in the Retry-After, and over 400 s exactly 100 + 400 samples (the old code: 2,100)."""
    settings = server_settings(tmp_path)
    settings.limits.rate_samples_per_s = 1.0
    settings.limits.rate_burst_samples = 20
    app = create_app(settings)
    with run_server(settings, app=app) as url, httpx.Client(base_url=url, timeout=30) as c:
        limiter = app.state.service.limiter
        fake = [float(int(time.monotonic()))]  # whole seconds: the refill adds up exactly
        limiter.clock = lambda: fake[0]
        statuses: list[int] = []
        retry: list[str | None] = []
        for k in range(21):  # t = 0, 20, ..., 400 s
            r = post(c, batch(f"big-{k}", n=100, signal=f"b_{k}"))
            statuses.append(r.status_code)
            retry.append(r.headers.get("retry-after"))
            fake[0] += 20.0
            if k == 2:
                first = stored_count(c)
                assert first == 100, f"{first} samples stored in 40 s at 1 sample/s, burst 20: {statuses}"
        stored = stored_count(c)
    # a full bucket admits the 100 (-80 after); repaid to 20 tokens 100 s later, and so on
    assert statuses == [200 if k % 5 == 0 else 429 for k in range(21)], statuses
    assert retry[1:5] == ["80", "60", "40", "20"], retry
    assert stored == 100 + 400, f"{stored} samples stored in 400 s at 1 sample/s (batches of 100, burst 20)"
