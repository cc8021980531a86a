"""A real HTTP webhook receiver for tests of the event sinks: a threaded server on a free port."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got: its raw body, ``X-Zhizao-Signature`` ("" when absent) and when it
    arrived (``time.time()``: the ``now`` a receiver checks the signature's timestamp against)."""

    body: bytes
    signature: str
    received_at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    url: str
    received: list[Delivery] = field(default_factory=list)
    """Every delivery, in arrival order (answered 204)."""


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Serve ``http://127.0.0.1:<free port>/hook`` until the block ends."""
    receiver = WebhookReceiver("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.received.append(Delivery(body, self.headers.get("X-Zhizao-Signature", "")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
