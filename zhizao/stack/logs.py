"""Logging of the one-process stack: the commands' own output is the report; the components'
warnings are shown with ``-v`` only. The level is set on the handler too, because some libraries
set their loggers' levels when imported (aiomqtt sets ``mqtt`` to WARNING), after this runs."""

from __future__ import annotations

import logging


def setup_logging(verbose: bool) -> None:
    level = logging.WARNING if verbose else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
