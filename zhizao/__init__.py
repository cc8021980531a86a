"""zhizao (智造): the shared vocabulary of the stack (samples, batches, wire format, errors)."""

from __future__ import annotations

from zhizao.errors import (
    ConfigError,
    ConnectionLost,
    PartialWrite,
    Rejected,
    SecurityError,
    StoreUnavailable,
    Unavailable,
    WireFormatError,
    ZhizaoError,
)
from zhizao.model import AssetPath, Batch, Quality, Sample, Value

__version__ = "0.2.0"

__all__ = [
    "AssetPath",
    "Batch",
    "ConfigError",
    "ConnectionLost",
    "PartialWrite",
    "Quality",
    "Rejected",
    "Sample",
    "SecurityError",
    "StoreUnavailable",
    "Unavailable",
    "Value",
    "WireFormatError",
    "ZhizaoError",
    "__version__",
]
