"""paho-mqtt on the asyncio event loop: one connection of a paho ``Client``, no network thread.

:class:`PahoOnLoop` drives a paho client from the running loop as aiomqtt does (paho's "external
event loop" interface): the socket's reads are ``loop.add_reader`` → ``client.loop_read()``, its
writes ``loop.add_writer`` → ``client.loop_write()`` while paho has something queued (paho's
``on_socket_register_write`` / ``on_socket_unregister_write``), and ``client.loop_misc()`` runs every
second for the keepalive (PINGREQ, and the drop when no PINGRESP comes). So every paho callback —
``on_message``, ``on_connect``, … — runs on the loop, and what the loop calls on the client
(``ack``, ``publish``, ``subscribe``) only queues a packet: the packets queued by one pass of the
loop go out together in the next ``loop_write``. Nothing crosses threads but the blocking
``client.connect`` (DNS, TCP, TLS handshake), which runs in a worker thread; the client's socket
callbacks are installed only when it has returned, so paho calls them on the loop only.

Reads are buffered (:class:`BufferedSocket`, on by default): paho reads each packet with three or
four ``recv`` calls (type byte, length bytes, body) and hands one packet per ``loop_read``; the
buffer reads up to 64 KiB per ``recv`` and each wake-up of the reader calls ``loop_read`` as long
as read bytes are pending (at most :data:`PACKETS_PER_WAKEUP` packets, then the loop runs other
callbacks first; one pass of the loop runs at most two such wake-ups, so timers stay on time) —
which also drains what a TLS socket has decrypted but paho not yet read. paho has no public hook
for its socket object: the wrapper replaces the client's ``_sock`` (the attribute paho 2.x reads
and writes through, typed ``SocketLike``); if a paho version has no such attribute the reads are
simply not buffered. ``after_read`` is called at the end of each wake-up
of the reader, after the messages it read: a user can handle a burst of messages at once there.
:meth:`PahoOnLoop.pause_reading` / :meth:`PahoOnLoop.resume_reading` stop and restart reading (flow
control: a user that holds too many messages not yet acknowledged waits for its commits).

Errors: ``connect`` raises :class:`~zhizao.errors.SecurityError` for a TLS failure and
:class:`~zhizao.errors.ConnectionLost` for an unreachable broker; :meth:`PahoOnLoop.wait_closed`
raises ``SecurityError`` when the broker refuses the credentials and ``ConnectionLost`` for any
other end: a DISCONNECT, a connection paho drops (read error, missed PINGRESP) or an exception
from ``loop_read``/``loop_write``/``loop_misc`` (and so from a callback paho runs in them, e.g.
``on_message``: logged with its traceback, chained as the ``ConnectionLost``'s cause), or the
user's :meth:`PahoOnLoop.end` (a subscriber whose commit failed wants the broker to redeliver:
a broker resends unacknowledged messages only on a new connection). The broker
redelivers what was not acknowledged. :meth:`PahoOnLoop.close` removes the reader, writer and
keepalive task, sends the queued packets and a DISCONNECT if the socket takes them at once, and
closes the socket.

Usage (one instance per connection)::

    session = PahoOnLoop(client)                       # callbacks such as on_message set on client
    try:
        await session.connect(host, port, keepalive=30)
        client.subscribe(...)
        await session.wait_closed()                    # raises ConnectionLost / SecurityError
    finally:
        session.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Final, NoReturn

import paho.mqtt.client as mqtt

from zhizao.errors import ConnectionLost, SecurityError

log = logging.getLogger(__name__)

READ_SIZE: Final = 65536
"""Bytes asked of the socket per ``recv`` by :class:`BufferedSocket`."""
PACKETS_PER_WAKEUP: Final = 256
"""Packets read in one wake-up of the reader at most, before the loop runs its other callbacks."""


class BufferedSocket:
    """A paho ``SocketLike`` reading its socket ``READ_SIZE`` bytes at a time and serving paho's
    small reads from that buffer. ``pending()`` counts the bytes read and not yet taken (plus a
    TLS socket's own pending bytes): while it is non-zero, ``loop_read`` has more to read without
    the socket becoming readable again. Everything else goes to the socket itself."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(READ_SIZE)  # BlockingIOError, ssl.SSLWantReadError, …: as paho expects
            if not buf:
                return b""  # end of stream
            self._buf, pos = buf, 0
        end = min(pos + bufsize, len(buf))
        self._pos = end
        return buf[pos:end]

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def send(self, data: bytes | bytearray) -> int:
        sent: int = self._sock.send(data)
        return sent

    def fileno(self) -> int:
        fd: int = self._sock.fileno()
        return fd

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._buf, self._pos = b"", 0
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class PahoOnLoop:
    """One connection of ``client`` driven by the running event loop (see the module docstring).

    ``on_connected`` is called (on the loop) with paho's connect flags when the broker accepts the
    connection; ``after_read`` after each wake-up of the reader. The instance sets the client's
    ``on_connect``, ``on_disconnect`` and socket callbacks; the others (``on_message``, …) are the
    user's."""

    def __init__(
        self,
        client: mqtt.Client,
        *,
        on_connected: Callable[[Any], None] | None = None,
        after_read: Callable[[], None] | None = None,
        buffered: bool = True,
    ) -> None:
        self.client = client
        self.connected = False
        """True once the broker accepted the connection (CONNACK), until it ends."""
        self.error: BaseException | None = None
        """The exception that ended the connection, if one did."""
        self._on_connected = on_connected
        self._after_read = after_read
        self._buffered = buffered
        self._where = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: asyncio.Future[str] | None = None
        self._fd = -1
        self._misc: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # _closed and _connecting, shared with the connect thread
        self._closed = False
        self._connecting = False
        self._paused = False
        self._drain: asyncio.Handle | None = None
        """The pass of the loop queued to read on what is already read (see ``_on_readable``)."""

    @property
    def lost(self) -> asyncio.Future[str]:
        """Resolved with the reason text when the connection ends (after :meth:`connect`)."""
        if self._lost is None:
            raise RuntimeError("not connected")
        return self._lost

    async def connect(self, host: str, port: int, *, keepalive: int, **options: Any) -> None:
        """``client.connect(host, port, keepalive, **options)`` in a worker thread, then the
        connection's I/O on this loop. The CONNACK comes later: :attr:`connected`,
        ``on_connected``, or a refusal through :meth:`wait_closed`. Cancelled (or closed) while the
        thread connects, the thread closes what it opened when ``client.connect`` returns."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._lost = loop.create_future()
        self._where = f"{host}:{port}"
        call = partial(self.client.connect, host, port, keepalive=keepalive, **options)
        with self._lock:
            if self._closed:
                raise RuntimeError("closed")
            self._connecting = True
        try:
            await asyncio.to_thread(self._connect_in_thread, call)
        except ssl.SSLError as exc:
            raise SecurityError(f"MQTT TLS to {host}:{port} failed: {exc}") from exc
        except OSError as exc:
            raise ConnectionLost(f"MQTT broker {host}:{port} unreachable: {exc}") from exc
        except asyncio.CancelledError:
            self.close()  # now, or by the thread once connect returns
            raise
        if not self._closed:
            self._attach()

    def _connect_in_thread(self, call: Callable[[], Any]) -> None:
        try:
            call()
        finally:
            with self._lock:
                self._connecting = False
                orphaned = self._closed
            if orphaned:  # closed meanwhile: nothing is attached, nothing else uses the client
                self._shut_client()

    async def wait_closed(self) -> NoReturn:
        """Wait for the connection to end; raise ``SecurityError`` when the broker refused the
        credentials, else ``ConnectionLost`` (its cause: the exception that ended it, if any)."""
        reason = await self.lost
        if "refused" in reason and "authori" in reason.lower():
            raise SecurityError(f"MQTT broker {self._where} {reason}")
        raise ConnectionLost(f"MQTT broker {self._where} {reason}") from self.error

    def close(self) -> None:
        """End the connection (see the module docstring); idempotent, never raises for a socket
        that is already gone."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connecting = self._connecting
        self._detach()
        self._resolve("closed")
        if not connecting:  # else the connect thread shuts the client when connect returns
            self._shut_client()

    def end(self, reason: str, cause: BaseException | None = None) -> None:
        """End the connection from the user's side as if it dropped: reading stops now,
        :meth:`wait_closed` raises ``ConnectionLost`` with ``reason`` (its cause ``cause``); the
        user's :meth:`close` then sends what is queued and a DISCONNECT (the session persists when
        it was opened persistent). Idempotent; the first reason counts."""
        if self._lost is not None and self._lost.done():
            return
        if self.error is None:
            self.error = cause
        self._detach()
        self._resolve(reason)

    def pause_reading(self) -> None:
        """Stop reading the socket until :meth:`resume_reading` (flow control: what the broker
        sends waits in the socket's buffers and at the broker). Writes and the keepalive go on;
        paho drops the connection if a PINGRESP stays unread for a whole keepalive."""
        if not self._paused:
            self._paused = True
            if self._fd >= 0 and self._loop is not None:
                self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        """Read again (bytes already buffered first)."""
        if self._paused:
            self._paused = False
            if self._fd >= 0 and self._loop is not None:
                self._loop.add_reader(self._fd, self._on_readable)
                self._drain_soon()

    def _shut_client(self) -> None:
        client = self.client
        client.on_socket_close = None
        client.on_socket_register_write = None  # from here paho writes at once, in this call
        client.on_socket_unregister_write = None
        client.on_disconnect = None
        client.on_connect = None
        try:
            client.disconnect()  # the queued packets, then DISCONNECT: paho closes the socket after it
        finally:
            sock = client.socket()
            if sock is not None:  # the socket did not take it all now: no waiting, close it
                with contextlib.suppress(OSError):
                    sock.close()

    # -- on the loop -------------------------------------------------------------------------
    def _attach(self) -> None:
        loop, client = self._loop, self.client
        assert loop is not None
        sock = client.socket()
        if sock is None:
            self._resolve("disconnected: the connection closed while connecting")
            return
        if self._buffered and getattr(client, "_sock", None) is sock:
            sock = BufferedSocket(sock)
            client._sock = sock
        self._fd = sock.fileno()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        if not self._paused:
            loop.add_reader(self._fd, self._on_readable)
        if client.want_write():  # CONNECT not all written by connect(): paho counts the writer as
            loop.add_writer(self._fd, self._on_writable)  # registered already (no callback then)
        self._misc = loop.create_task(self._misc_loop())

    def _detach(self) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = -1
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def _on_readable(self) -> None:
        """The socket's reader. While a drain is queued it reads nothing: the drain (queued in
        an earlier pass of the loop, so it ran first in this one) reads on, and one pass of the
        loop never reads more than two bursts of ``PACKETS_PER_WAKEUP`` packets. Each burst that
        left read bytes waiting queued one drain at most: without that bound every pass would add
        a drain to those still queued, passes would grow without end and timers (the buffer's
        group commit, the keepalive) would fire later and later (by 0.3 s after 20,000 queued
        messages, measured)."""
        if self._drain is None:
            self._read()

    def _drain_soon(self) -> None:
        if self._drain is None and self._loop is not None:
            self._drain = self._loop.call_soon(self._drained)

    def _drained(self) -> None:
        self._drain = None
        self._read()

    def _read(self) -> None:
        """One wake-up of the reader: up to ``PACKETS_PER_WAKEUP`` packets, then ``after_read``."""
        if self._closed or self._paused:
            return
        client = self.client
        try:
            for _ in range(PACKETS_PER_WAKEUP):
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                    break  # paho closed the connection (on_socket_close, on_disconnect called)
                sock = client.socket()
                pending = getattr(sock, "pending", None)
                if pending is None or pending() <= 0:
                    break
            else:  # bytes already read wait: the socket will not wake the reader for them
                self._drain_soon()
            if self._after_read is not None:
                self._after_read()
        except Exception as exc:  # noqa: BLE001 - whatever it is, the connection ends with it
            self._fail(exc)

    def _on_writable(self) -> None:
        try:
            self.client.loop_write()
        except Exception as exc:  # noqa: BLE001 - whatever it is, the connection ends with it
            self._fail(exc)

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                    return  # no connection any more (its end already reported)
            except Exception as exc:  # noqa: BLE001 - whatever it is, the connection ends with it
                self._fail(exc)
                return

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        if not isinstance(exc, OSError):  # not the network: a bug (in a callback, say)
            log.error("MQTT %s: %r in the connection's I/O; closing it", self._where, exc, exc_info=exc)
        self._detach()
        self._resolve(f"connection error: {type(exc).__name__}: {exc}")

    def _resolve(self, reason: str) -> None:
        self.connected = False
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    # -- paho callbacks (called on the loop, from loop_read / loop_write / loop_misc) --------
    def _on_connect(self, _c: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._resolve(f"connection refused: {reason}")
            return
        self.connected = True
        if self._on_connected is not None:
            self._on_connected(flags)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._resolve(f"disconnected: {reason}")

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        self._detach()  # before paho closes the file descriptor

    def _on_register_write(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_writer(self._fd)
