"""Configuration of the HTTP uplink (``[uplink.http]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from edge_agent.buffer.encoded import BulkLimits
from edge_agent.config_paths import check_readable_file, on_this_host
from zhizao.config import (
    ExistingFile,
    StrictModel,
    check_existing,
    is_loopback_host,
    plaintext_warning,
    url_host,
)
from zhizao.errors import SecurityError


class HttpUplinkConfig(StrictModel):
    """Where ingest is and how to talk to it; see ``edge_agent/uplinks/http/sample.toml``."""

    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    """Base URL of ingest (``https://ingest.example:8000``); batches go to ``<url>/api/v1/batches``."""
    token: SecretStr | None = None
    token_file: Path | None = None
    """Read when the uplink starts; checked with the config on the machine that loads it (must
    exist and be readable: ``uplink.token_file: file not found: /etc/zhizao/agent.token``)."""
    gzip: bool = True
    wire_version: Literal[1, 2] = 2
    """Wire-format version of the batches sent: 2 (samples grouped into series, what ingest reads
    fastest) or 1, for an ingest older than version 2 of the format."""
    verify: bool | Path = True
    """TLS: ``true`` (system CAs), ``false`` (never in production) or the path of a CA bundle
    (PEM file) or of a folder of hashed CA certificates; the path must exist."""
    client_cert: ExistingFile | None = None
    """Mutual TLS: this client's PEM certificate (with ``client_key``); must exist."""
    client_key: ExistingFile | None = None
    timeout_s: float = Field(10.0, gt=0)
    max_batch_samples: int = Field(5000, ge=1, le=100_000)
    linger_s: float = Field(1.0, ge=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_cap_s: float = Field(30.0, gt=0)
    """Longest retry delay; also the delay of every refusal (401/403, or an answer that is not
    ingest's: the data stays in the buffer, see ``README.md``)."""
    bulk: bool = True
    """Send several buffered batches per request to ``<url>/api/v1/batches/bulk`` (NDJSON, each
    batch keeps its own id and outcome). An ingest without that endpoint (404/405 there, while
    ingest answers at ``/api/v1/batches``) is detected and batches then go one per request."""
    bulk_max_batches: int = Field(500, ge=1, le=100_000)
    """Batches in one bulk request (ingest's ``limits.max_bulk_batches`` must be at least this)."""
    bulk_max_samples: int = Field(100_000, ge=1)
    """Samples in one bulk request (ingest's ``limits.max_bulk_samples`` must be at least this)."""
    bulk_max_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Uncompressed body bytes of one bulk request (below ingest's ``limits.max_body_bytes``).
    A request ingest still finds too large (413) is split in halves and resent."""
    allow_plaintext: bool = False
    """An ``http://`` URL to a host that is not this machine's loopback with a bearer token (or a
    password in the URL) sends that secret unencrypted: it is accepted, with one warning naming the
    key and the host at check-config and at start. ``true`` silences it, for a network you trust;
    prefer ``https://``."""

    @field_validator("token_file")
    @classmethod
    def _token_file_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return check_readable_file(v) if v is not None and on_this_host(info) else v

    @field_validator("verify")
    @classmethod
    def _ca_bundle_exists(cls, v: bool | Path) -> bool | Path:
        return check_existing(v, "any") if isinstance(v, Path) else v

    @model_validator(mode="after")
    def _one_token_source(self) -> HttpUplinkConfig:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give either token or token_file, not both")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        return self

    def plaintext_warnings(self, key: str) -> list[str]:
        """One line per secret this uplink sends unencrypted to a host that is not loopback
        (``key``: this table's dotted key, e.g. ``uplink.http``); none with ``allow_plaintext``."""
        parts = urlsplit(self.url)
        host, where = url_host(self.url)
        if self.allow_plaintext or parts.scheme != "http" or is_loopback_host(host):
            return []
        how, fix = "http://", "use https://"
        found = []
        if self.token is not None or self.token_file is not None:
            field = "token" if self.token is not None else "token_file"
            found.append(plaintext_warning(f"{key}.{field}", "bearer token", where, how, fix))
        if parts.password is not None:
            found.append(plaintext_warning(f"{key}.url", "password in the URL", where, how, fix))
        return found

    def bulk_limits(self) -> BulkLimits | None:
        """What one bulk request may hold, or ``None`` when ``bulk`` is off."""
        if not self.bulk:
            return None
        return BulkLimits(self.bulk_max_batches, self.bulk_max_samples, self.bulk_max_bytes)

    def bearer_token(self) -> str | None:
        """The token (read from ``token_file`` when given there); ``SecurityError`` naming the
        file when it cannot be read."""
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise SecurityError(f"HTTP uplink: cannot read token_file {self.token_file}: {why}") from exc
        return self.token.get_secret_value() if self.token is not None else None
