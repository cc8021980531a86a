"""bench

What every bench shares: the ``--smoke`` size (tests/bench/test_bench_smoke.py runs each bench with
it in CI, so that a bench that no longer runs is seen) and how a size is chosen.
"""

from __future__ import annotations

import argparse
from typing import TypeVar

SMOKE_HELP = "tiny sizes for the CI smoke test: checks the bench runs end to end; its figures mean nothing"

T = TypeVar("T")


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    """``--smoke`` (it wins over ``--quick``); every bench's JSON last line carries ``"smoke"``."""
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)


def sized(args: argparse.Namespace, *, full: T, quick: T, smoke: T) -> T:
    """The size of ``args``' run: ``smoke`` with ``--smoke``, else ``quick`` with ``--quick``, else
    ``full``."""
    if args.smoke:
        return smoke
    return quick if args.quick else full
