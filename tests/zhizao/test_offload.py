"""zhizao.stack.offload.in_process: a call in a spawned worker, its value or error on the loop,
and a worker that is ended — not waited for — when the caller leaves early."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from zhizao.stack.offload import WorkerDied, in_process


def _fail(message: str) -> None:
    raise ValueError(message)


def _pid_then_sleep(path: str, seconds: float) -> str:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def _read_pid(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else None


async def _pid_of(path: Path) -> int:
    for _ in range(600):  # the worker is spawned: it imports this module first
        if (pid := _read_pid(path)) is not None:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never started")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_value_and_error_come_back_on_the_loop() -> None:
    async def main() -> None:
        async with in_process(pow, 2, 10) as result:
            assert await result == 1024
        async with in_process(_fail, "bad input") as result:
            with pytest.raises(ValueError, match="bad input"):
                await result

    asyncio.run(main())


def test_leaving_early_ends_the_worker_instead_of_waiting(tmp_path: Path) -> None:
    marker = tmp_path / "pid"

    async def main() -> tuple[int, asyncio.Future[str]]:
        async with in_process(_pid_then_sleep, str(marker), 3600.0) as result:
            pid = await _pid_of(marker)
            os.kill(pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the worker too: it is ignored
            await asyncio.sleep(0.3)
            assert not result.done() and not _gone(pid)
        return pid, result

    pid, result = asyncio.run(main())
    assert _gone(pid)  # ended and reaped when the block was left, an hour before its call would end
    assert result.cancelled()


def test_a_worker_that_dies_fails_the_result(tmp_path: Path) -> None:
    marker = tmp_path / "pid"

    async def main() -> None:
        async with in_process(_pid_then_sleep, str(marker), 3600.0) as result:
            os.kill(await _pid_of(marker), signal.SIGKILL)
            with pytest.raises(WorkerDied, match="ended without a result"):
                await result

    asyncio.run(main())
