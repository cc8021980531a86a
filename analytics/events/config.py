"""Configuration of event sinks and KPI alert rules (``analytics/events/sample.toml``)."""

from __future__ import annotations

import logging
import re
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field

from analytics.events.emitter import EventEmitter
from analytics.events.sinks.base import Sink
from zhizao.config import StrictModel, host_port, is_loopback_host, plain_http_target, plaintext_warning
from zhizao.events import Severity
from zhizao.tls import TlsConfig

log = logging.getLogger(__name__)

SECRET_NAME = re.compile(r"auth|token|secret|passw|key|signature|cookie|session", re.IGNORECASE)
"""A header or query parameter whose name matches carries a secret (``Authorization``,
``X-Api-Key``, ``X-Auth-Token``, ``?token=``...): over ``http://`` it crosses the network readable."""

HOW, FIX = "http://", "use https://"


def _url_secrets(url: str, key: str, where: str) -> list[str]:
    """Lines for a password in ``url`` and for its query parameters named like a secret."""
    parts = urlsplit(url)
    found = []
    if parts.password is not None:
        found.append(plaintext_warning(f"{key}.url", "password in the URL", where, HOW, FIX))
    names = sorted({n for n, _ in parse_qsl(parts.query, keep_blank_values=True) if SECRET_NAME.search(n)})
    if names:
        found.append(plaintext_warning(f"{key}.url", f"query parameter {', '.join(names)}", where, HOW, FIX))
    return found


class IngestSinkConfig(StrictModel):
    url: str
    """Base URL of ingest, e.g. ``http://127.0.0.1:8080``; events go to ``/api/v1/events``."""
    token: str | None = None
    timeout_s: float = Field(10.0, gt=0)
    allow_plaintext: bool = False
    """Silences the warning for a ``token`` sent over ``http://`` to a host that is not loopback
    (:meth:`SinksConfig.plaintext_warnings`), for a network you trust; prefer ``https://``."""

    def plaintext_warnings(self, key: str) -> list[str]:
        where = plain_http_target(self.url, self.allow_plaintext)
        if where is None:
            return []
        token = [plaintext_warning(f"{key}.token", "bearer token", where, HOW, FIX)] if self.token else []
        return token + _url_secrets(self.url, key, where)


class MqttSinkConfig(StrictModel):
    host: str
    port: int = Field(1883, ge=1, le=65535)
    """1883 without TLS; 8883 usually with a ``tls`` table."""
    qos: Literal[0, 1, 2] = 1
    retain: bool = True
    username: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    """TLS to the broker (``[sinks.mqtt.tls]``: ``ca_file``, ``cert_file``/``key_file``,
    ``insecure``), the table of the edge agent's and the gateway's MQTT clients
    (:class:`zhizao.tls.TlsConfig`); the files must exist when the config is validated."""
    allow_plaintext: bool = False
    """Silences the warning for a ``password`` sent without ``tls`` to a host that is not loopback
    (:meth:`SinksConfig.plaintext_warnings`), for a network you trust; prefer a ``tls`` table."""

    def plaintext_warnings(self, key: str) -> list[str]:
        if self.allow_plaintext or not self.password or self.tls is not None or is_loopback_host(self.host):
            return []
        return [plaintext_warning(f"{key}.password", "MQTT password", host_port(self.host, self.port),
                                  "MQTT without TLS", "add a tls table (port 8883 usually)")]


class WebhookConfig(StrictModel):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = None
    """HMAC-SHA256 key: each delivery carries ``X-Zhizao-Signature: t=<unix seconds>,v1=<hex HMAC of
    "<t>.<body>">`` (:mod:`analytics.events.signature`, checked by ``verify_webhook_signature``)."""
    timeout_s: float = Field(10.0, gt=0)
    allow_plaintext: bool = False
    """Silences the warnings for an ``http://`` URL to a host that is not loopback with a
    ``secret``, a header or query parameter named like a secret, or a password in the URL
    (:meth:`SinksConfig.plaintext_warnings`), for a network you trust; prefer ``https://``."""

    def plaintext_warnings(self, key: str) -> list[str]:
        where = plain_http_target(self.url, self.allow_plaintext)
        if where is None:
            return []
        lines = []
        if self.secret:
            lines.append(plaintext_warning(
                f"{key}.secret", "HMAC-signed payload", where, HOW,
                f"{FIX} (the secret itself is not sent, but anyone on the path reads the events and can "
                f"replay a delivery within the receiver's tolerance)"))
        names = sorted(n for n in self.headers if SECRET_NAME.search(n))
        if names:
            lines.append(plaintext_warning(f"{key}.headers", f"header {', '.join(names)}", where, HOW, FIX))
        return lines + _url_secrets(self.url, key, where)


class SinksConfig(StrictModel):
    ingest: IngestSinkConfig | None = None
    mqtt: MqttSinkConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    max_attempts: int = Field(5, ge=1)

    def plaintext_warnings(self, key: str = "sinks") -> list[str]:
        """One line per secret a sink would send unencrypted to a host that is not this machine's
        loopback (127.0.0.0/8, ``::1``, ``localhost``; names are not resolved), naming its key
        (``key``: this table's dotted key) and the host, as the edge agent and the gateway do:
        an MQTT ``password`` without ``tls``; over an ``http://`` URL the ingest ``token``, a
        webhook's ``secret`` (the signed payload is readable and replayable), a header or query
        parameter named like a secret (:data:`SECRET_NAME`) or a password in the URL. A sink with
        ``allow_plaintext = true`` gives none. Logged by :func:`build_emitter` (at start); never a
        refusal (isolated plant networks exist)."""
        found: list[str] = []
        if self.ingest is not None:
            found += self.ingest.plaintext_warnings(f"{key}.ingest")
        if self.mqtt is not None:
            found += self.mqtt.plaintext_warnings(f"{key}.mqtt")
        for i, w in enumerate(self.webhooks):
            found += w.plaintext_warnings(f"{key}.webhooks[{i}]")
        return found


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


def build_emitter(cfg: SinksConfig, key: str = "sinks") -> EventEmitter:
    """An emitter with every configured sink (imported lazily: only configured protocols load).
    Logs one WARNING per :meth:`SinksConfig.plaintext_warnings` line (``key``: the sinks' table).
    Several webhooks are labelled ``webhook[0]``, ``webhook[1]`` ... in config order
    (:func:`~analytics.events.emitter.sink_labels`)."""
    for warning in cfg.plaintext_warnings(key):
        log.warning("%s", warning)
    sinks: list[Sink] = []
    if cfg.ingest is not None:
        from analytics.events.sinks.http import IngestSink

        sinks.append(IngestSink(cfg.ingest.url, cfg.ingest.token, cfg.ingest.timeout_s))
    if cfg.mqtt is not None:
        from analytics.events.sinks.mqtt import MqttSink

        m = cfg.mqtt
        sinks.append(MqttSink(m.host, m.port, qos=m.qos, retain=m.retain, username=m.username,
                              password=m.password, tls=m.tls))
    for w in cfg.webhooks:
        from analytics.events.sinks.http import WebhookSink

        sinks.append(WebhookSink(w.url, w.headers, w.secret, w.timeout_s))
    return EventEmitter(sinks, max_attempts=cfg.max_attempts)
