"""Libraries' log lines, tuned to the "one line per event worth knowing" rule of the agent and
gateway logs (:func:`quiet_libraries`, called once the logging is set up):

- ``httpx`` logs every request at INFO (one line per batch sent, ~86,000 a day): WARNING only;
- ``asyncua`` logs a lost session as ERROR with a traceback ("Publish iteration crashed", 15
  lines each time an OPC UA server stops) while the connector logs the event itself: its records
  keep their first line, without the traceback, and at most WARNING.
"""

from __future__ import annotations

import logging


class _OneLine(logging.Filter):
    """On a handler: an ``asyncua`` record loses its traceback and is at most WARNING (the
    message stays, with the exception's type and text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("asyncua"):
            return True
        if record.exc_info or record.exc_text:
            exc = record.exc_info[1] if record.exc_info else None
            record.msg = f"{record.getMessage()}" + (f" ({type(exc).__name__}: {exc})" if exc else "")
            record.args = None
            record.exc_info = None
            record.exc_text = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_libraries() -> None:
    """See the module docstring; after ``logging.basicConfig`` (the filter goes on the root
    logger's handlers: a logger's own filters do not see its children's records); idempotent."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _OneLine) for f in handler.filters):
            handler.addFilter(_OneLine())
