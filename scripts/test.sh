#!/usr/bin/env bash
# Installs what the tests need when missing (Debian: mosquitto, influxdb, chromium,
# chromium-driver, systemd; Python: .venv with zhizao[dev]), then runs ruff, mypy --strict and pytest.
# Fails on any failure, including "no tests collected". Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v influxd >/dev/null || missing+=(influxdb)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v systemd-analyze >/dev/null || missing+=(systemd)  # tests/deploy verifies the units
if [ ${#missing[@]} -gt 0 ]; then
  echo "test: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup-env.sh dev

echo "test: ruff"
.venv/bin/ruff check .
echo "test: mypy --strict"
.venv/bin/mypy .
echo "test: pytest"
# pytest exits 5 when it collects nothing; set -e turns that into a failure too.
# Most tests wait on real servers more than they compute: ZHIZAO_TEST_WORKERS processes (2 by
# default) share them, each test module on one worker (tests/conftest.py: xdist groups).
workers="${ZHIZAO_TEST_WORKERS:-2}"
# One OpenMP thread per worker: the workers already share the cores, and OpenMP threads spinning
# against the other worker made a 500-row gradient-boosting fit take 79 s in one CI run.
if [ "$workers" != "1" ] && [ "$workers" != "0" ]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 -n "$workers" --dist loadgroup "$@"
