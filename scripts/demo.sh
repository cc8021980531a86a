#!/usr/bin/env bash
# The main job on a fresh machine: install zhizao into .venv and run `zhizao demo`
# (simulator, edge agent, ingest on DuckDB, analytics, web dashboard on one box).
# Extra arguments go to `zhizao demo`, e.g.  scripts/demo.sh --speed 30 --duration 120
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/zhizao demo "$@"
