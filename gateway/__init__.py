"""The zhizao site gateway: the plant broker's unified namespace → durable buffer → ingest.

See ``gateway/README.md``. Entry points: :class:`~gateway.service.Gateway` and ``zhizao gateway``.
"""

from gateway.config import GatewayConfig, load
from gateway.frames import FrameReader, frame_rows
from gateway.service import Gateway

__all__ = ["FrameReader", "Gateway", "GatewayConfig", "frame_rows", "load"]
