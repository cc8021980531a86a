"""Webhook signatures: ``X-Zhizao-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC is HMAC-SHA256, keyed with the webhook's ``secret``, of ``"<t>." + body`` (the timestamp as
sent, a dot, then the raw request body bytes) — the scheme of Stripe's webhooks. Signing the
timestamp with the body lets a receiver refuse a delivery older than a tolerance (5 minutes
suggested): a captured request cannot be replayed later. Within the tolerance a replay is an
exact copy of a delivery already received; events carry their id (and an episode's state), so a
receiver that upserts on the id — as ingest does — is unaffected; a stricter one remembers the
signatures it accepted for the tolerance window and refuses a repeat.

:func:`verify_webhook_signature` is what a receiver needs; it uses only the standard library and
is meant to be copied into a receiver's code as is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Zhizao-Signature"


def sign_webhook(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Zhizao-Signature`` value for ``body`` sent at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_webhook_signature(secret: str, body: bytes, header: str, tolerance_s: float = 300.0,
                             now: float | None = None) -> bool:
    """Whether ``header`` (the ``X-Zhizao-Signature`` value) signs ``body`` (the raw request body,
    before any JSON parsing) with ``secret``, at a time within ``tolerance_s`` of ``now``.

    Copy this function into a receiver as is (standard library only: ``hashlib``, ``hmac``, ``time``)
    and answer 401 when it returns ``False``. Several ``v1=`` entries are accepted (any one may
    match: room for a key rotation); the comparison takes constant time.
    """
    t, macs = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            t = int(value)
        elif key == "v1":
            macs.append(value)
    if t is None or not macs:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False  # too old (a replay) or from a clock far ahead
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, mac) for mac in macs)
