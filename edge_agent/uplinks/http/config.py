"""Configuration of the HTTP uplink (``[uplink.http]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from zhizao.config import StrictModel


class HttpUplinkConfig(StrictModel):
    """Where ingest is and how to talk to it; see ``edge_agent/uplinks/http/sample.toml``."""

    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    """Base URL of ingest (``https://ingest.example:8000``); batches go to ``<url>/api/v1/batches``."""
    token: SecretStr | None = None
    token_file: Path | None = None
    gzip: bool = True
    verify: bool | Path = True
    """TLS: ``true`` (system CAs), ``false`` (never in production) or a CA bundle path."""
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: float = Field(10.0, gt=0)
    max_batch_samples: int = Field(5000, ge=1, le=100_000)
    linger_s: float = Field(1.0, ge=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_cap_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _one_token_source(self) -> HttpUplinkConfig:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give either token or token_file, not both")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        return self

    def bearer_token(self) -> str | None:
        """The token (read from ``token_file`` when given there)."""
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip()
        return self.token.get_secret_value() if self.token is not None else None
