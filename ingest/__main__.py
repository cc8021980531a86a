"""``python -m ingest`` = ``zhizao ingest``."""

from __future__ import annotations

import sys

from ingest.cli import main

raise SystemExit(main(sys.argv[1:]))
