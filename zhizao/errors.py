"""The error hierarchy shared by every zhizao component.

Protocol and library errors are translated into these at the boundary where they occur
(``raise ConnectionLost(...) from exc``), so callers handle one small set of types.
"""

from __future__ import annotations


class ZhizaoError(Exception):
    """Base of every error zhizao raises on purpose."""


class ConfigError(ZhizaoError):
    """A configuration file or value is invalid.

    ``problems`` holds one ``(key, message)`` pair per problem found, so a person can fix
    them all at once instead of one per run.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {key or '<root>'}: {msg}" for key, msg in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class WireFormatError(ZhizaoError):
    """A document in zhizao's wire format is malformed.

    ``path`` names the offending field (``samples[12].ts``); ``message`` says what is wrong.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class TooLarge(WireFormatError):
    """A document, or the body a gzip document inflates to, exceeds its size limit (ingest: 413,
    not 400)."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


class ConnectionLost(ZhizaoError):
    """A connection to a source or sink dropped; the supervisor reconnects."""


class Unavailable(ZhizaoError):
    """A receiver cannot take data now; retry later (``retry_after`` seconds if known)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Rejected(ZhizaoError):
    """A receiver refused data permanently (4xx other than 408/429): retrying cannot help."""


class PartialWrite(ZhizaoError):
    """A receiver stored some samples of a batch and rejected others.

    ``rejected`` maps the index of each rejected sample in the batch to the reason.
    """

    def __init__(self, accepted: int, rejected: dict[int, str]) -> None:
        self.accepted = accepted
        self.rejected = rejected
        super().__init__(f"{accepted} samples accepted, {len(rejected)} rejected")


class StoreUnavailable(ZhizaoError):
    """A storage backend is down or too slow; nothing was committed."""


class SecurityError(ZhizaoError):
    """A security requirement could not be met (untrusted certificate, missing key...).

    zhizao never falls back to a weaker security mode when this happens.
    """
