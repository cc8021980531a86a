"""Run a real ingest server for tests of any component.

* :func:`run_server` — uvicorn in a background thread of this process, on a free port; a
  context manager (usable from sync and async tests) yielding the base URL.
* :class:`IngestProcess` — ``python -m ingest serve`` as a subprocess with ``kill()`` (SIGKILL)
  and ``start()``, for crash/restart tests.

Example::

    settings = Settings(storage={"duckdb": {"path": str(tmp_path / "z.duckdb")}},
                        auth={"enabled": False})
    with run_server(settings) as url:
        httpx.post(f"{url}/api/v1/batches", content=encode_batch(batch))
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ingest.app import create_app
from ingest.auth import Scope, TokenFile
from ingest.settings import Settings
from ingest.storage.base import Store
from zhizao.net import free_port


def server_settings(tmp_path: Path, *, auth: bool = False, backend: str = "duckdb") -> Settings:
    """Settings with every file under ``tmp_path`` (DuckDB file, tokens file)."""
    return Settings.model_validate({
        "storage": {"backend": backend, "duckdb": {"path": str(tmp_path / "ingest.duckdb")}},
        "auth": {"enabled": auth, "tokens_file": str(tmp_path / "tokens.json")},
    })


def create_token(settings: Settings, name: str, *scopes: Scope, producers: Sequence[str] = (),
                 forwarder: bool = False) -> str:
    """Issue a token in ``settings.auth.tokens_file``; returns the secret. A write token writes
    batches as the producer ``name`` only, unless bound to ``producers`` or made a ``forwarder``
    (any producer) — as ``zhizao ingest token create --producer P`` / ``--forwarder``."""
    token, _ = TokenFile(Path(settings.auth.tokens_file)).create(
        name, list(scopes or (Scope.WRITE,)), producers=producers, forwarder=forwarder)
    return token


@contextlib.contextmanager
def run_server(settings: Settings, *, store: Store | None = None, port: int | None = None,
               timeout: float = 30.0, app: FastAPI | None = None) -> Iterator[str]:
    """Serve ``app`` (default ``create_app(settings, store=store)``; build your own with
    ``create_app(..., routers=[...])`` to mount more routes) with uvicorn on
    ``127.0.0.1:<free port>`` in a thread.

    Yields ``http://127.0.0.1:<port>`` once the server accepts requests (store opened); stops
    it on exit. ``store`` must then be opened in the server's own loop — leave it ``None``
    unless you know it is loop-agnostic.
    """
    with serve_app(app or create_app(settings, store=store), port=port, timeout=timeout) as url:
        yield url


@contextlib.contextmanager
def serve_app(app: FastAPI, *, port: int | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Serve any ASGI ``app`` with uvicorn on ``127.0.0.1:<free port>`` in a thread; yields its
    base URL once it accepts requests (lifespan started) and stops it on exit."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"ingest-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


class IngestProcess:
    """``python -m ingest serve --config <file>`` on a free port, as a real subprocess."""

    def __init__(self, config_path: Path, *, port: int | None = None, log_path: Path | None = None,
                 scheme: str = "http", verify: str | bool = True) -> None:
        """``scheme="https"`` when the config has ``[tls]``; ``verify`` is the CA/cert file to trust."""
        self.config_path = config_path
        self.port = port or free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.verify: ssl.SSLContext | bool = (  # httpx deprecates verify=<path>: a context trusting it
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify)
        self.log_path = log_path or config_path.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        import httpx

        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest", "serve", "--config", str(self.config_path),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ingest exited; log:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1, verify=self.verify).status_code == 200:
                    return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"ingest did not become ready; log:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
