"""Files replaced atomically and durably."""

from __future__ import annotations

import os
from pathlib import Path


def replace_atomically(path: Path, data: bytes, tmp: Path | None = None) -> None:
    """Replace ``path`` with ``data`` so that a crash or power loss leaves either the old file or
    the new one, never a part: written to ``tmp`` (default ``<name>.tmp`` beside it) and fsynced,
    ``os.replace``-d over ``path``, then the folder fsynced (the rename itself durable). The
    folder must exist."""
    tmp = tmp if tmp is not None else path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
