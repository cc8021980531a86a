"""Configuration of event sinks and KPI alert rules (``analytics/events/sample.toml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from analytics.events.emitter import EventEmitter
from analytics.events.sinks.base import Sink
from zhizao.config import StrictModel
from zhizao.events import Severity


class IngestSinkConfig(StrictModel):
    url: str
    """Base URL of ingest, e.g. ``http://127.0.0.1:8080``; events go to ``/api/v1/events``."""
    token: str | None = None
    timeout_s: float = Field(10.0, gt=0)


class MqttSinkConfig(StrictModel):
    host: str
    port: int = Field(1883, ge=1, le=65535)
    qos: Literal[0, 1, 2] = 1
    retain: bool = True
    username: str | None = None
    password: str | None = None


class WebhookConfig(StrictModel):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = None
    """HMAC-SHA256 key: each delivery carries ``X-Zhizao-Signature: t=<unix seconds>,v1=<hex HMAC of
    "<t>.<body>">`` (:mod:`analytics.events.signature`, checked by ``verify_webhook_signature``)."""
    timeout_s: float = Field(10.0, gt=0)


class SinksConfig(StrictModel):
    ingest: IngestSinkConfig | None = None
    mqtt: MqttSinkConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    max_attempts: int = Field(5, ge=1)


class ThresholdRule(StrictModel):
    """Alert when KPI ``kpi`` of a machine or line, over the last ``window_s``, is ``op`` ``threshold``.

    E.g. ``oee < 0.6`` over 3600 s, or ``idle_energy_share_ratio > 0.3``. The episode opens when the
    condition has held for ``for_s`` and resolves when it has been clear (beyond ``hysteresis``)
    for ``clear_after_s``. Windows with less than ``min_planned_s`` of planned time (breaks,
    no shift) are skipped for time-based KPIs: no alarm and no clear."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    kpi: str
    op: Literal["<", "<=", ">", ">="]
    threshold: float
    scope: str = ""
    """Asset prefix the rule applies to (empty: everything)."""
    level: Literal["machine", "line"] = "machine"
    window_s: float = Field(3600.0, gt=0)
    for_s: float = Field(0.0, ge=0)
    clear_after_s: float = Field(0.0, ge=0)
    hysteresis: float = Field(0.0, ge=0)
    min_planned_s: float = Field(600.0, ge=0)
    severity: Severity = Severity.WARNING


class EventsConfig(StrictModel):
    sinks: SinksConfig = SinksConfig()
    rules: list[ThresholdRule] = Field(default_factory=list)
    interval_s: float = Field(60.0, gt=0)
    """How often the KPI alerter evaluates its rules."""


def build_emitter(cfg: SinksConfig) -> EventEmitter:
    """An emitter with every configured sink (imported lazily: only configured protocols load)."""
    sinks: list[Sink] = []
    if cfg.ingest is not None:
        from analytics.events.sinks.http import IngestSink

        sinks.append(IngestSink(cfg.ingest.url, cfg.ingest.token, cfg.ingest.timeout_s))
    if cfg.mqtt is not None:
        from analytics.events.sinks.mqtt import MqttSink

        m = cfg.mqtt
        sinks.append(MqttSink(m.host, m.port, qos=m.qos, retain=m.retain, username=m.username,
                              password=m.password))
    for w in cfg.webhooks:
        from analytics.events.sinks.http import WebhookSink

        sinks.append(WebhookSink(w.url, w.headers, w.secret, w.timeout_s))
    return EventEmitter(sinks, max_attempts=cfg.max_attempts)
