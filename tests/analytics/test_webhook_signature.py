"""Webhook signatures carry their time (security review L8): ``X-Zhizao-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>.<body>">``, so a receiver can refuse a replayed delivery. Deliveries go
to a real HTTP receiver and are checked with :func:`verify_webhook_signature`, the helper a
receiver copies."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from analytics.events import EpisodeTracker, SinksConfig, build_emitter, signature
from analytics.events.signature import sign_webhook, verify_webhook_signature
from analytics.events.sinks.http import WebhookSink
from tests.support.webhook import WebhookReceiver
from zhizao.events import Event, EventSource

SECRET = "s3cret"


def _events() -> list[Event]:
    tracker = EpisodeTracker(source=EventSource.KPI, rule="oee-low", threshold=0.6)
    return tracker.observe("plant1/a1/line1/cnc-1", datetime(2026, 11, 23, 8, tzinfo=UTC), True, 0.4)


async def test_a_delivery_is_signed_with_its_time_and_verifies(webhook: WebhookReceiver) -> None:
    cfg = SinksConfig.model_validate({"webhooks": [{"url": webhook.url, "secret": SECRET}],
                                      "max_attempts": 1})
    before = int(time.time())
    async with build_emitter(cfg) as emitter:
        assert await emitter.emit(_events()) == {"webhook": True}
    (d,) = webhook.received
    m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", d.signature)
    assert m, d.signature
    t = int(m.group(1))
    assert before <= t <= d.received_at + 1
    # the MAC covers the timestamp and the body, exactly as documented (what a receiver in another
    # language implements)
    assert m.group(2) == hmac.new(SECRET.encode(), f"{t}.".encode() + d.body, hashlib.sha256).hexdigest()
    assert verify_webhook_signature(SECRET, d.body, d.signature, now=d.received_at)


async def test_a_replay_after_the_tolerance_is_refused(webhook: WebhookReceiver) -> None:
    cfg = SinksConfig.model_validate({"webhooks": [{"url": webhook.url, "secret": SECRET}],
                                      "max_attempts": 1})
    async with build_emitter(cfg) as emitter:
        await emitter.emit(_events())
    (d,) = webhook.received
    t = int(d.signature.split(",")[0].removeprefix("t="))
    assert verify_webhook_signature(SECRET, d.body, d.signature, now=t + 299)
    assert not verify_webhook_signature(SECRET, d.body, d.signature, now=t + 301)  # captured and resent later
    assert not verify_webhook_signature(SECRET, d.body, d.signature, now=t - 301)  # from a clock far ahead
    assert verify_webhook_signature(SECRET, d.body, d.signature, tolerance_s=900, now=t + 600)
    # re-dating a captured request needs the secret: a new t with the old MAC does not verify
    resigned = re.sub(r"^t=\d+", f"t={t + 600}", d.signature)
    assert not verify_webhook_signature(SECRET, d.body, resigned, now=t + 600)


def test_tampering_and_malformed_headers_are_refused() -> None:
    body = b'{"events": []}'
    now = 1_795_000_000
    header = sign_webhook(SECRET, body, now)
    assert verify_webhook_signature(SECRET, body, header, now=now)
    assert not verify_webhook_signature(SECRET, body + b" ", header, now=now)
    assert not verify_webhook_signature("other", body, header, now=now)
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    for bad in ("", f"sha256={mac}", f"v1={header.split('v1=')[1]}", f"t={now}", f"t=x,v1={mac}",
                f"t=\u0661\u0662,v1={mac}", f"t={now},v1=", f"t={now},v0={header.split('v1=')[1]}"):
        assert not verify_webhook_signature(SECRET, body, bad, now=now), bad
    # several v1 entries (a key rotation): any one may match; spaces after commas are fine
    old_key = sign_webhook("previous", body, now).split(",")[1]
    assert verify_webhook_signature(SECRET, body, f"t={now}, {old_key}, {header.split(',')[1]}", now=now)


async def test_a_retry_is_signed_anew(webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each attempt is signed when it is sent: a delivery retried after an outage carries a fresh
    timestamp, so the backlog is not refused as a replay."""
    async with WebhookSink(webhook.url, secret=SECRET) as sink:
        await sink.send(_events())
        later = time.time() + 3600
        monkeypatch.setattr(signature, "time", SimpleNamespace(time=lambda: later))
        await sink.send(_events())
    first, second = webhook.received
    assert first.body == second.body
    t1, t2 = (int(d.signature.split(",")[0].removeprefix("t=")) for d in (first, second))
    assert t2 == int(later) and t2 >= t1 + 3600
    assert verify_webhook_signature(SECRET, second.body, second.signature, now=later)
