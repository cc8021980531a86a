"""Local networking helpers shared by the one-box stack, the simulator and ingest's test server."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now on ``host`` (the kernel's choice: bind to port 0).
    Another process may take it before the caller binds it; tests use ``tests.support.ports``,
    which hands out ports outside the kernel's ephemeral range instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
