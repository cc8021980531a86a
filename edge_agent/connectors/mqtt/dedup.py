"""Recognising an MQTT broker's redeliveries of messages already committed, also across a crash.

A subscriber that sends its PUBACK only after a message's data is committed gets the message
again (DUP flag) when it loses the connection — or the process — between the commit and the
PUBACK. Vendor payloads carry no identity, so :class:`CommittedDigests` keeps one: the
:func:`digest_of` (blake2b of topic + ``b"\\0"`` + payload) of each message. Used by the edge
agent's MQTT connector and by the site gateway's raw vendor intake, both committing to the
agent's buffer (:class:`~edge_agent.buffer.SqliteBuffer`).

Contract (the user's side in brackets):

- Each QoS ≥ 1 message whose data is committed gets a buffer mark from :meth:`CommittedDigests.mark`
  (key ``mqtt:<name>:dup:<slot>``, value ``<n>:<digest>``) [committed in the SAME transaction as its
  data: ``submit(samples, marks)`` / ``submit_records(records, marks)``]. The marks form a ring of
  :data:`DUP_SLOTS` slots: the newest ``DUP_SLOTS`` such messages are known [so the user holds at
  most :data:`MAX_HELD` messages whose commit has not ended, pausing its reads there: then every
  committed message the broker may still redeliver is in the ring].
- :meth:`~CommittedDigests.load` reads the ring of an earlier process [before connecting: the
  broker's redeliveries may be the first messages of the session].
- A digest is *seen* only while its commit is pending (:meth:`~CommittedDigests.remember`, with
  the owner of that commit) or done (:meth:`~CommittedDigests.settle` with ``committed=True``, or
  loaded). A commit that fails forgets it (``committed=False``), so the broker's next redelivery
  is stored.
- Only a redelivery is checked (:meth:`~CommittedDigests.is_redelivery`: DUP flag set and digest
  seen): a message published twice with the same payload is stored twice (but a redelivery whose
  topic and payload equal those of another message seen is taken for it: vendor payloads carry
  their timestamp, so two readings rarely are identical). A redelivery of a committed message is
  only acknowledged [counted in ``duplicates_skipped``]; one whose original is still pending [is
  acknowledged only if that commit succeeds: :meth:`~CommittedDigests.pending` names its owner].
- The digests seen are kept in memory up to :data:`SEEN_MAX` (oldest dropped first).

No MQTT client here: the module only needs the buffer's ``marks(prefix)``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)
_blake2b = hashlib.blake2b

DUP_SLOTS = 4096
"""Digests of committed messages kept in the buffer: more than a user ever holds unacknowledged
(:data:`MAX_HELD`), so every committed message a broker can redeliver is known."""
MAX_HELD = DUP_SLOTS // 2
"""Messages read whose commit has not ended (for QoS >= 1: not yet acknowledged) at most: at this
many a user stops reading until commits settle below half of it. Brokers bound what they send
unacknowledged (Mosquitto: ``max_inflight_messages``, 20 by default; MQTT 5 Receive Maximum) but
not always: Mosquitto 2.0.11 sent far more of a backlog queued for an offline session once the
first PUBACKs came; and QoS 0 has no such bound. It also bounds the data waiting in memory for a
commit."""
SEEN_MAX = 20_000
"""Digests kept in memory at most (the ring's, and those of this process's recent messages)."""

Owner = TypeVar("Owner")
"""What a pending commit is known by (the connector's burst, the gateway's commit future)."""


class MarkSource(Protocol):
    """Where committed marks are read back (the agent's buffer)."""

    async def marks(self, prefix: str) -> dict[str, str]: ...


def digest_of(topic: str, payload: bytes) -> bytes:
    """The identity of a message: 16 bytes of blake2b over topic, ``\\0`` and payload."""
    return _blake2b(topic.encode() + b"\0" + payload, digest_size=16).digest()


def digest_of_raw(topic: bytes, payload: bytes) -> bytes:
    """:func:`digest_of` from the topic's UTF-8 bytes as they came (no decoding, no encoding)."""
    return _blake2b(topic + b"\0" + payload, digest_size=16).digest()


class CommittedDigests(Generic[Owner]):
    """The digests of one subscriber's messages, pending or committed (see the module docstring).
    ``name`` names its ring of marks (``mqtt:<name>:dup:``) and its log lines. Used on one event
    loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = f"mqtt:{name}:dup:"
        self._seen: OrderedDict[bytes, Owner | None] = OrderedDict()
        """Digest -> the owner of its pending commit, or None once committed."""
        self._seq = 0

    async def load(self, source: MarkSource) -> None:
        """Take the digests an earlier process committed (oldest first) as committed."""
        entries: list[tuple[int, bytes]] = []
        for value in (await source.marks(self.prefix)).values():
            seq, _, hexdigest = value.partition(":")
            try:
                entries.append((int(seq), bytes.fromhex(hexdigest)))
            except ValueError:
                log.warning("MQTT %s: ignoring an unreadable committed-message mark %r", self.name, value)
        for _, dig in sorted(entries):
            self._seen[dig] = None
        self._seq = max((seq for seq, _ in entries), default=-1) + 1

    def is_redelivery(self, dig: bytes, dup: bool) -> bool:
        """A redelivery (DUP) of a message whose commit is pending or done: not to be stored."""
        return dup and dig in self._seen

    def pending(self, dig: bytes) -> Owner | None:
        """The owner of the pending commit of a seen digest; None once it is committed."""
        return self._seen[dig]

    def mark(self, dig: bytes) -> tuple[str, str]:
        """``(key, value)`` of the next slot of the ring, holding ``dig``: to commit with the
        message's data (QoS >= 1 messages with data only: what the broker can redeliver)."""
        seq = self._seq
        self._seq = seq + 1
        return f"{self.prefix}{seq % DUP_SLOTS:04d}", f"{seq}:{dig.hex()}"

    def remember(self, dig: bytes, owner: Owner) -> None:
        """``dig`` is being committed by ``owner`` (seen from now on; the newest)."""
        seen = self._seen
        if dig in seen:
            seen.move_to_end(dig)
        seen[dig] = owner
        if len(seen) > SEEN_MAX:
            seen.popitem(last=False)

    def settle(self, digests: Iterable[bytes], owner: Owner, *, committed: bool) -> None:
        """``owner``'s commit ended: its digests are committed, or forgotten so that the broker's
        redelivery is stored. A digest evicted, or taken by a later owner, is left alone."""
        seen = self._seen
        for dig in digests:
            if seen.get(dig) is owner:
                if committed:
                    seen[dig] = None
                else:
                    del seen[dig]
