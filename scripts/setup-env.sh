#!/usr/bin/env bash
# Creates .venv (if missing) and installs zhizao into it, with the dev extras when given "dev".
# Sourced by scripts/demo.sh and scripts/test.sh; prints nothing when everything is in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"
stamp=".venv/.installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing zhizao${extras} into .venv"
  # (grep drops this machine's notes about unreachable local package mirrors; pip's status is kept)
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  touch "$stamp"
fi
