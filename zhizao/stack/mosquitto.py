"""A local Mosquitto for the gateway path of ``zhizao check --gateway`` (MQTT 5: the gateway's
shared subscription and the agent's MQTT uplink need it; the embedded amqtt broker speaks 3.1.1).

``async with LocalMosquitto(workdir) as broker`` runs the ``mosquitto`` binary (Debian package
``mosquitto``) on a free port of 127.0.0.1 with persistence in ``workdir`` until the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Self

from zhizao.errors import ConnectionLost
from zhizao.net import free_port


class LocalMosquitto:
    """See the module docstring. Attributes: ``host``, ``port``, ``url``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.url = f"mqtt://{self.host}:{self.port}"
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
        if binary is None:
            raise ConnectionLost("--gateway needs the mosquitto broker (Debian: apt install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"persistence true\npersistence_location {self.workdir}/\nmax_queued_messages 1000000\n"
            "log_dest stderr\nlog_type error\n", encoding="utf-8")
        self._proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if self._proc.returncode is not None or loop.time() > deadline:
                    await self.__aexit__(None, None, None)
                    raise ConnectionLost(f"mosquitto did not start on port {self.port}") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
