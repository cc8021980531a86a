"""The event emitter (``analytics/events/emitter.py``): what ``emit`` reports per sink, against
real HTTP receivers."""

from __future__ import annotations

from datetime import UTC, datetime

from analytics.events import EpisodeTracker, SinksConfig, build_emitter
from analytics.events.emitter import EventEmitter
from analytics.events.sinks.http import WebhookSink
from tests.support.webhook import WebhookReceiver
from zhizao.events import EventSource
from zhizao.net import free_port

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ASSET = "plant1/a1/line1/cnc-1"


async def test_two_webhooks_one_down_is_reported_undelivered_under_its_own_name(
        webhook: WebhookReceiver) -> None:
    """Every webhook sink is named ``webhook``: with two, ``emit`` must still report each one (the
    scoring service takes ``all(results.values())`` as "every sink has it" and forgets the event)."""
    dead = f"http://127.0.0.1:{free_port()}/hook"   # nobody listens: connection refused
    tracker = EpisodeTracker(source=EventSource.ANOMALY, rule="model-v0001")
    (ev,) = tracker.observe(ASSET, T0, True, 0.9)
    async with EventEmitter([WebhookSink(dead), WebhookSink(webhook.url)], max_attempts=1) as emitter:
        results = await emitter.emit([ev])
    assert len(webhook.received) == 1                 # the second webhook got it
    assert results == {"webhook[0]": False, "webhook[1]": True}
    assert emitter.failed == {"webhook[0]": 1}


async def test_a_single_webhook_keeps_its_plain_name(webhook: WebhookReceiver) -> None:
    tracker = EpisodeTracker(source=EventSource.ANOMALY, rule="model-v0001")
    async with build_emitter(SinksConfig.model_validate({"webhooks": [{"url": webhook.url}]})) as emitter:
        assert await emitter.emit(tracker.observe(ASSET, T0, True, 0.9)) == {"webhook": True}
