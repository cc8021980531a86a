"""Legacy: the frames of gateways before buffer records, and their migration into records.

Gateways now store each agent batch as one buffer *record* (:mod:`gateway.intake`,
:meth:`edge_agent.buffer.SqliteBuffer.submit_records`). A buffer written by an older gateway holds
*frames* instead (below); at start :func:`migrate_frames` moves every frame left in it into a
record under the same identity, then deletes the frame's rows (a crash in between leaves both:
the record is sent, the frame moved again, ingest stores the batch once).

How frames were stored: in the buffer's sample rows, which the buffer cuts into its *own*
batches ("windows") when read. A gateway must not re-batch an agent's batch under new ids (the
broker redelivers messages after a gateway crash, an agent republishes a batch whose PUBACK it
missed, and only the agent's original ``(producer, batch_id)`` lets ingest drop those copies), so
every message was committed as one *frame*::

    [marker, sample_1, ..., sample_n]        # one put(): one transaction, contiguous rows

The marker is a sample on the reserved asset ``zhizao/gateway/frame/marker`` whose string value
is ``{"p": producer, "b": batch_id, "s": seq, "n": n}``. :class:`FrameReader` reads windows and
cuts them back into the original batches, which go to ingest with their original identity.

Recovery invariant: a window is acked (deleted) only when it *and every older window* has had
all its frames delivered. After a crash the surviving windows are therefore a suffix of the row
stream, and rows before the first surviving marker belong to a frame that was already delivered
(its head lived in a deleted, hence fully delivered, window): they are skipped and counted
(``skipped_tail_rows``). Re-read frames are resent under the same ids; ingest deduplicates them.
A frame whose rows end before its declared ``n`` (rows lost to the buffer's overflow policy or a
damaged row) is sent short and counted (``short_frames``).

``FrameReader`` offers ``take``/``take_encoded``/``ack``/``release`` over such a buffer: frames
come back whole, with their ids, oldest first (a marker row is recognised by its asset string).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import orjson

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from zhizao.model import AssetPath, Batch, Sample, valid_id

log = logging.getLogger(__name__)

MARKER_ASSET: Final = AssetPath("zhizao", "gateway", "frame", "marker")
MARKER_SIGNAL: Final = "frame"


def marker(producer: str, batch_id: str, seq: int, n: int, ts: datetime | None = None) -> Sample:
    """The marker sample heading a frame of ``n`` samples of batch ``(producer, batch_id)``."""
    text = orjson.dumps({"p": producer, "b": batch_id, "s": seq, "n": n}).decode()
    return Sample(MARKER_ASSET, MARKER_SIGNAL, ts or datetime.now(UTC), text)


def frame_rows(batch: Batch) -> list[Sample]:
    """The rows to ``put`` (in one call) for ``batch``: its marker, then its samples."""
    return [marker(batch.producer, batch.batch_id, batch.seq, len(batch)), *batch.samples]


def is_marker(s: Sample) -> bool:
    return s.signal == MARKER_SIGNAL and s.asset == MARKER_ASSET


_NEEDLE: Final = f'"{MARKER_ASSET}"'.encode()
_MARKER_KEY: Final = (str(MARKER_ASSET), MARKER_SIGNAL)


def marker_of_row(row: bytes) -> Sample | None:
    """The marker sample a stored row holds (wire-format JSON), or ``None`` for a data row."""
    if _NEEDLE not in row:
        return None
    try:
        doc = orjson.loads(row)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or (doc.get("asset"), doc.get("signal")) != _MARKER_KEY:
        return None
    return Sample(MARKER_ASSET, MARKER_SIGNAL, datetime.now(UTC), str(doc.get("value")))


@dataclass(frozen=True, slots=True)
class FrameHead:
    producer: str
    batch_id: str
    seq: int
    n: int


def parse_marker(s: Sample) -> FrameHead:
    """The head of a marker sample; ``ValueError`` if it is damaged."""
    try:
        doc = orjson.loads(str(s.value))
        head = FrameHead(str(doc["p"]), str(doc["b"]), int(doc["s"]), int(doc["n"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"damaged frame marker {s.value!r}: {exc}") from exc
    if not (valid_id(head.producer) and valid_id(head.batch_id)) or head.seq < 0 or head.n < 0:
        raise ValueError(f"invalid frame marker {s.value!r}")
    return head


Window = Batch | EncodedBatch


@dataclass(eq=False)
class _Window:
    batch: Window
    pending: int = 0


@dataclass(eq=False)
class _Frame:
    head: FrameHead
    windows: list[_Window] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples) + len(self.rows)

    def touch(self, w: _Window) -> None:
        if not self.windows or self.windows[-1] is not w:
            self.windows.append(w)
            w.pending += 1


@dataclass(slots=True)
class FrameStats:
    frames: int = 0
    short_frames: int = 0
    skipped_tail_rows: int = 0
    bad_markers: int = 0
    windows_acked: int = 0


class FrameReader:
    """Agent batches out of a :class:`SqliteBuffer` of frames (see the module docstring).

    ``take`` may be awaited by several forwarders at once (it is serialised); ``ack`` and
    ``release`` take the exact object ``take`` returned. One reader uses either ``take`` or
    ``take_encoded``, never both. Use from one event loop.
    """

    def __init__(self, buffer: SqliteBuffer, *, window: int = 10_000) -> None:
        self.buffer = buffer
        self.window = window
        self.stats = FrameStats()
        self._windows: deque[_Window] = deque()
        self._ready: deque[_Frame] = deque()
        self._open: _Frame | None = None
        self._out: dict[int, tuple[Window, _Frame]] = {}
        self._encoded: bool | None = None
        self._lock = asyncio.Lock()
        self._ack_lock = asyncio.Lock()

    async def take(self, max_items: int, linger: float = 0.0) -> Batch | None:
        """The next agent batch, or ``None`` after ``linger`` s with nothing buffered.

        ``max_items`` is ignored: a frame is forwarded whole, as big as its producer made it.
        """
        got = await self._take(linger, encoded=False)
        assert got is None or isinstance(got, Batch)
        return got

    async def take_encoded(self, max_items: int, linger: float = 0.0) -> EncodedBatch | None:
        """Like :meth:`take`, the samples left in their stored wire-format rows."""
        got = await self._take(linger, encoded=True)
        assert got is None or isinstance(got, EncodedBatch)
        return got

    async def _take(self, linger: float, *, encoded: bool) -> Window | None:
        if self._encoded is None:
            self._encoded = encoded
        elif self._encoded != encoded:
            raise RuntimeError("a FrameReader serves either take or take_encoded, not both")
        async with self._lock:
            while not self._ready:
                w_batch: Window | None = await (
                    self.buffer.take_encoded(self.window, linger) if encoded
                    else self.buffer.take(self.window, linger))
                if w_batch is None:
                    if self._open is None:
                        return None
                    self._finish_open("its remaining rows are no longer in the buffer")
                    continue
                w = _Window(w_batch)
                self._read(w)
                if w.pending == 0:  # nothing left to send in it
                    await self._ack_windows()
            frame = self._ready.popleft()
            h = frame.head
            out: Window = (EncodedBatch(h.producer, h.batch_id, h.seq, tuple(frame.rows)) if encoded
                           else Batch(h.producer, h.batch_id, h.seq, tuple(frame.samples)))
            self._out[id(out)] = (out, frame)
            return out

    def _read(self, w: _Window) -> None:
        batch = w.batch
        self._windows.append(w)
        skipped = 0
        items: tuple[Sample, ...] | tuple[bytes, ...] = (
            batch.rows if isinstance(batch, EncodedBatch) else batch.samples)
        for item in items:
            s = marker_of_row(item) if isinstance(item, bytes) else (item if is_marker(item) else None)
            if s is not None:
                if self._open is not None:
                    self._finish_open("the next frame starts before it is complete")
                try:
                    head = parse_marker(s)
                except ValueError as exc:
                    self.stats.bad_markers += 1
                    log.error("buffer window %s: %s; its rows are skipped", batch.batch_id, exc)
                    continue
                self._open = _Frame(head)
                self._open.touch(w)
                if head.n == 0:
                    self._finish_open("")
            elif self._open is not None:
                self._open.touch(w)
                if isinstance(item, bytes):
                    self._open.rows.append(item)
                else:
                    self._open.samples.append(item)
                if len(self._open) >= self._open.head.n:
                    self._finish_open("")
            else:
                skipped += 1
        if skipped:
            self.stats.skipped_tail_rows += skipped
            log.info("buffer window %s: skipped %d rows of a frame delivered before a restart "
                     "(or cut by the overflow policy)", batch.batch_id, skipped)

    def _finish_open(self, short_reason: str) -> None:
        frame, self._open = self._open, None
        assert frame is not None
        if len(frame) < frame.head.n:
            self.stats.short_frames += 1
            log.warning("frame %s/%s has %d of its %d samples (%s); sending what is left",
                        frame.head.producer, frame.head.batch_id, len(frame), frame.head.n,
                        short_reason)
        self.stats.frames += 1
        self._ready.append(frame)

    async def ack(self, batch: Window) -> None:
        """The batch is delivered; delete every window that is now fully delivered, oldest first."""
        _, frame = self._out.pop(id(batch))
        for w in frame.windows:
            w.pending -= 1
        await self._ack_windows()

    async def _ack_windows(self) -> None:
        async with self._ack_lock:
            while self._windows and self._windows[0].pending == 0:
                w = self._windows[0]
                if self._open is not None and w in self._open.windows:
                    break
                await self.buffer.ack(w.batch)
                self._windows.popleft()
                self.stats.windows_acked += 1

    def release(self, batch: Window) -> None:
        """Hand ``batch`` back undelivered: it is taken again first, under the same id."""
        _, frame = self._out.pop(id(batch))
        self._ready.appendleft(frame)

    @property
    def in_flight(self) -> int:
        return len(self._out)


async def migrate_frames(buffer: SqliteBuffer, *, window: int = 10_000) -> int:
    """Move every frame held as sample rows in ``buffer`` into a record (see the module
    docstring); returns the number of frames moved. Call before forwarding starts."""
    if buffer.stats.backlog_samples <= buffer.stats.backlog_record_samples:
        return 0
    reader = FrameReader(buffer, window=window)
    moved = 0
    while (frame := await reader.take_encoded(0, 0.0)) is not None:
        await buffer.put_records([EncodedBatch.record(frame.producer, frame.batch_id, frame.seq, len(frame),
                                                      frame.line())])
        await reader.ack(frame)
        moved += 1
    log.info("buffer %s: %d frames of an older gateway moved into records (%d rows skipped, %d short)",
             buffer.path, moved, reader.stats.skipped_tail_rows, reader.stats.short_frames)
    return moved
