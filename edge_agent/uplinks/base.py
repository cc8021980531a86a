"""The uplink contract shared by every northbound transport.

``await uplink.send(batch)`` returns normally only when the receiver has acknowledged the whole
batch durably. Otherwise it raises:

- :class:`~zhizao.errors.Unavailable` — nothing (or nothing certain) was stored; resend the
  same batch later (``retry_after`` seconds if the receiver said so). Resending is safe:
  receivers deduplicate on ``(producer, batch_id)``.
- :class:`~zhizao.errors.PartialWrite` — the receiver stored some samples and refused the
  others for good (``rejected`` maps index → reason); the batch is done.
- :class:`~zhizao.errors.Rejected` — the receiver refused the whole batch for good.

Uplinks are async context managers; ``send`` may be called concurrently only if the
implementation says so.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from edge_agent.buffer.encoded import EncodedBatch
from zhizao.model import Batch


class Uplink(Protocol):
    """A northbound transport (see the module docstring)."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def send(self, batch: Batch) -> None: ...


@runtime_checkable
class EncodedUplink(Protocol):
    """An uplink that can send a batch as stored (wire-format rows), with ``send``'s contract."""

    async def send_encoded(self, batch: EncodedBatch) -> None: ...
