"""Free TCP ports and waiting for a server to listen."""

from __future__ import annotations

import fcntl
import itertools
import os
import random
import socket
import tempfile
import time
from pathlib import Path

# Ports handed out lie below the kernel's ephemeral range (32768-60999 by default), so no
# outgoing connection can take one between ``free_port()`` and the server's bind, and each
# pytest-xdist worker draws from its own span of _SPAN ports from _FIRST on (up to 8 workers),
# starting at a random place in it: two test sessions run at once on one machine (a developer's
# and CI's) would otherwise hand out the same ports in the same order and race for each bind.
_FIRST = 10_000
_SPAN = 2_500


def _worker_span() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    k = int(worker[2:]) if worker[2:].isdigit() else 0
    lo = _FIRST + (k % 8) * _SPAN
    return range(lo, lo + _SPAN)


_span = _worker_span()
_next = itertools.islice(itertools.cycle(_span), random.randrange(len(_span)), None)
_CLAIMS = Path(tempfile.gettempdir()) / "zhizao-test-ports"
_HELD_CLAIMS = 128
_claimed: dict[int, int] = {}
"""Port → file descriptor holding its claim (an exclusive ``flock``), oldest first: the last
``_HELD_CLAIMS`` ports handed out stay claimed (a test's servers have bound theirs long before)."""


def _claim(port: int) -> bool:
    """Claim ``port`` for this process against every other test process on the machine: two pytest
    sessions at once (a developer's and CI's) walk the same spans, and a random start alone still
    let one take a port the other had handed out and not yet bound (seen: 'address already in
    use'). The claim is a lock on a file, released after ``_HELD_CLAIMS`` later claims or by the
    kernel when the process ends."""
    if port in _claimed:
        return True
    _CLAIMS.mkdir(exist_ok=True)
    fd = os.open(_CLAIMS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _claimed[port] = fd
    while len(_claimed) > _HELD_CLAIMS:
        os.close(_claimed.pop(next(iter(_claimed))))
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (nor lingers on) right now, from this
    worker's span, taken in turn (a port comes round again only after ``_SPAN`` others)."""
    for _ in range(len(_span)):
        port = next(_next)
        if not _claim(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {_span.start}-{_span.stop - 1}")


def wait_listening(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on ``host:port``; ``TimeoutError`` else."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")
