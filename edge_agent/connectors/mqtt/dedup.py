"""Recognising an MQTT broker's redeliveries of messages already committed, also across a crash.

A subscriber that sends its PUBACK only after a message's data is committed gets the message
again (DUP flag) when it loses the connection — or the process — between the commit and the
PUBACK. Vendor payloads carry no identity, so :class:`CommittedDigests` keeps one: the
:func:`digest_of` (blake2b of the packet identifier, topic, ``b"\\0"``, payload) of each message.
The broker resends an unacknowledged message of a persistent session with its original packet
identifier and the DUP flag (MQTT 3.1.1 §4.4, MQTT 5 §4.4; Mosquitto does, also after a restart of
the subscriber or of the broker), so a redelivery has its original's digest, while two distinct
messages with the same topic and payload (a vendor payload without a timestamp: ``state idle``
now and ten seconds later) have different packet identifiers: the second is never taken for the
first. Used by the edge agent's MQTT connector and by the site gateway's raw vendor intake, both
committing to the agent's buffer (:class:`~edge_agent.buffer.SqliteBuffer`).

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
- Every message received goes through :meth:`~CommittedDigests.redelivered` [once, in arrival
  order, with its DUP flag and QoS]; only a redelivery is checked (DUP flag set and digest seen):
  a message published twice with the same payload is stored twice, and so is a redelivery of a
  message whose commit never succeeded. A redelivery of a committed message is only acknowledged
  [counted in ``duplicates_skipped``]; one whose original is still pending [is acknowledged only
  if that commit succeeds: :meth:`~CommittedDigests.pending` names its owner].
- Packet identifiers are reused: Mosquitto numbers a client's messages 1, 2, … 65535, 1, … (kept
  across its restarts with persistence), other brokers may reuse a freed one sooner. A reuse
  matters only when the new message's topic and payload also equal the old one's (same digest):
  in one process the new message simply takes the digest over (pending, then committed or
  forgotten with its own commit). Across processes each ring entry carries the count of QoS ≥ 1
  messages the subscriber had received (``rx``, continued by the next process from the highest
  loaded): at :meth:`~CommittedDigests.load` an entry more than :data:`STALE_RX` messages older
  than the newest is dropped as stale (its packet identifier may have come round again). What
  remains: a new message identical in topic, payload and packet identifier to one of the ring's
  entries that is not stale, received but not committed when the process died — after a wrap of
  65,535 identifiers during which fewer than :data:`DUP_SLOTS` messages carried data; its
  redelivery would be taken for the old one.
- The digests seen are kept in memory up to :data:`SEEN_MAX` (oldest dropped first).
- Ring marks of an older version (``<n>:<digest>``, a digest without the packet identifier) keep
  their slot but are not loaded: a redelivery of such a message is stored again once (a duplicate,
  never a loss).

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
STALE_RX = 32_768
"""A ring entry whose message came this many QoS >= 1 messages before the newest entry's is not
loaded: half the 65,535 packet identifiers a broker cycles through, far more than a broker can have
sent unacknowledged before it redelivers (the subscriber holds at most :data:`MAX_HELD`)."""

Owner = TypeVar("Owner")
"""What a pending commit is known by (the connector's burst, the gateway's commit future)."""


class MarkSource(Protocol):
    """Where committed marks are read back (the agent's buffer)."""

    async def marks(self, prefix: str) -> dict[str, str]: ...


def digest_of(topic: str, payload: bytes, mid: int = 0) -> bytes:
    """The identity of a message: 16 bytes of blake2b over its packet identifier ``mid`` (2 bytes,
    0 for QoS 0), topic, ``\\0`` and payload."""
    return _blake2b(mid.to_bytes(2, "big") + topic.encode() + b"\0" + payload, digest_size=16).digest()


def digest_of_raw(topic: bytes, payload: bytes, mid: int = 0) -> bytes:
    """:func:`digest_of` from the topic's UTF-8 bytes as they came (no decoding, no encoding)."""
    return _blake2b(mid.to_bytes(2, "big") + topic + b"\0" + payload, digest_size=16).digest()


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
        self.rx = 0
        """QoS >= 1 messages received (recognised redeliveries aside), continued across processes
        through the ring's entries."""

    async def load(self, source: MarkSource) -> None:
        """Take the digests an earlier process committed (oldest first) as committed; entries
        :data:`STALE_RX` messages older than the newest, and those of an older version, are not."""
        entries: list[tuple[int, bytes, int]] = []
        seqs: list[int] = []
        legacy = 0
        for value in (await source.marks(self.prefix)).values():
            seq_text, _, rest = value.partition(":")
            hexdigest, old_version, rx_text = rest.partition(":")
            try:
                seq = int(seq_text)
                seqs.append(seq)
                if not old_version:  # an older version's '<n>:<digest>'
                    legacy += 1
                    continue
                entries.append((seq, bytes.fromhex(hexdigest), int(rx_text)))
            except ValueError:
                log.warning("MQTT %s: ignoring an unreadable committed-message mark %r", self.name, value)
        newest = max((rx for _, _, rx in entries), default=-1)
        stale = 0
        for _, dig, rx in sorted(entries):
            if rx < newest - STALE_RX:
                stale += 1
                continue
            self._seen[dig] = None
        if legacy or stale:
            log.info("MQTT %s: %d committed-message marks not loaded (%d of an older version, %d stale): "
                     "a redelivery of those messages is stored again", self.name, legacy + stale, legacy,
                     stale)
        self._seq = max(seqs, default=-1) + 1
        self.rx = newest + 1

    def redelivered(self, dig: bytes, dup: bool, qos: int) -> bool:
        """Called once for each message received: True for a redelivery (DUP) of a message whose
        commit is pending or done — not to be stored; counts the others of QoS >= 1 in ``rx``."""
        if dup and dig in self._seen:
            return True
        if qos > 0:
            self.rx += 1
        return False

    def pending(self, dig: bytes) -> Owner | None:
        """The owner of the pending commit of a seen digest; None once it is committed."""
        return self._seen[dig]

    def mark(self, dig: bytes) -> tuple[str, str]:
        """``(key, value)`` of the next slot of the ring, holding ``dig`` (``<n>:<digest>:<rx>``):
        to commit with the message's data (QoS >= 1 messages with data only: what the broker can
        redeliver)."""
        seq = self._seq
        self._seq = seq + 1
        return f"{self.prefix}{seq % DUP_SLOTS:04d}", f"{seq}:{dig.hex()}:{self.rx}"

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
