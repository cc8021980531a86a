"""Configuration of the durable buffer (the ``[buffer]`` table of the agent and gateway configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from edge_agent.buffer.store import SqliteBuffer
from edge_agent.config_paths import check_file_in_writable_folder, on_this_host
from zhizao.config import StrictModel


class BufferConfig(StrictModel):
    """Where and how much to buffer; see ``edge_agent/sample-agent.toml`` for every option."""

    path: Path | None = None
    """The SQLite file; the agent defaults it to ``<state_dir>/buffer.sqlite``, the gateway to
    ``/var/lib/zhizao/gateway-buffer.sqlite`` (``gateway/config.py``). Checked on the machine that loads the
    config: its folder must exist and be writable (it is never created)."""
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    max_age_s: float = Field(7 * 86400.0, gt=0)
    overflow: Literal["drop_oldest", "reject_new"] = "drop_oldest"
    commit_interval_s: float = Field(0.1, gt=0, le=10)
    commit_max_samples: int = Field(20_000, ge=1)
    synchronous: Literal["normal", "full"] = "full"
    on_corrupt: Literal["quarantine", "fail"] = "quarantine"

    @field_validator("path")
    @classmethod
    def _folder_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return check_file_in_writable_folder(v) if v is not None and on_this_host(info) else v

    def build(self, producer: str, *, group_series: bool = False) -> SqliteBuffer:
        """A (not yet opened) buffer with these settings, batches labelled ``producer``
        (``group_series``: see :attr:`SqliteBuffer.group_series`)."""
        if self.path is None:
            raise ValueError("buffer.path is not set")
        return SqliteBuffer(
            self.path,
            producer,
            max_bytes=self.max_bytes,
            max_age_s=self.max_age_s,
            overflow=self.overflow,
            commit_interval=self.commit_interval_s,
            commit_max_samples=self.commit_max_samples,
            synchronous=self.synchronous,
            on_corrupt=self.on_corrupt,
            group_series=group_series,
        )
