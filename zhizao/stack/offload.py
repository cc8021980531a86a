"""Run one heavy call in a worker process that the caller can abandon at once.

``concurrent.futures.ProcessPoolExecutor`` cannot: its ``shutdown(cancel_futures=True)`` only
cancels calls not yet started, and the interpreter joins a running worker at exit, so a demo
stopped while its models train waits for the training to end. :func:`in_process` instead ends
the worker (SIGTERM) when its block is left before the result is in.

Contract:

* ``async with in_process(fn, *args) as result:`` starts ``fn(*args)`` in a fresh *spawned*
  process (``fn`` and ``args`` must pickle; nothing of the parent's state is forked) and yields
  an :class:`asyncio.Future` resolved on the caller's loop with ``fn``'s return value or its
  exception.
* Leaving the block while the call runs ends the worker and cancels ``result``; leaving it
  after the call ended only reaps the idle worker. Either way no process is left behind, and
  the caller waits for neither the call nor the import of its modules.
* The worker ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and stopping
  is the parent's decision (it then leaves the block).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerDied(RuntimeError):
    """The worker process ended without a result (killed, or out of memory)."""


@asynccontextmanager
async def in_process(fn: Callable[..., T], *args: Any) -> AsyncIterator[asyncio.Future[T]]:
    """See the module docstring."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_work, args=(sender, fn, args), daemon=True, name=f"zhizao-{fn.__name__}")
    proc.start()
    sender.close()  # the worker holds the only write end: its death is an EOF here
    result: asyncio.Future[T] = asyncio.ensure_future(_receive(receiver, proc.pid))
    try:
        yield result
    finally:
        if proc.is_alive():
            proc.terminate()
        result.cancel()
        await asyncio.to_thread(proc.join)
        receiver.close()


async def _receive(receiver: Connection, pid: int | None) -> Any:
    try:
        ok, value = await asyncio.to_thread(receiver.recv)
    except (EOFError, OSError):
        raise WorkerDied(f"worker process {pid} ended without a result") from None
    if ok:
        return value
    raise value


def _work(sender: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The worker: ``fn(*args)``, its value or exception sent back once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        reply: tuple[bool, Any] = (True, fn(*args))
    except Exception as exc:  # noqa: BLE001 — handed to the caller, who decides
        reply = (False, exc)
    try:
        sender.send(reply)
    except Exception as exc:  # noqa: BLE001 — e.g. an exception that does not pickle
        what = f"{type(exc).__name__}: {exc} (sending the result of {fn.__name__})"
        sender.send((False, RuntimeError(what)))
    finally:
        sender.close()
