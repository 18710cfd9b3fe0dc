#!/usr/bin/env bash
# Installs everything (Python deps; Debian chromium for the browser tests when run as root) and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation fonts-dejavu-core >/dev/null
fi
bash scripts/setup.sh requirements-dev.txt
. .venv/bin/activate
ruff check .
# test files spread over worker processes (pytest-xdist; a file's tests stay together with their module fixtures):
# one per core up to 4, UNLEARN_AUDIT_TEST_WORKERS to choose (0: no workers); "-n N" among the arguments wins
workers="${UNLEARN_AUDIT_TEST_WORKERS:-$(python -c "import os; print(max(1, min(4, len(os.sched_getaffinity(0)))))")}"
# torch threads per worker: the cores shared out (oversubscribed OpenMP threads spin against each other; with two
# workers on 2 cores, one thread each ran a pair of audit tests in 148 s instead of 212 s)
if [ "$workers" -gt 0 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
  export OMP_NUM_THREADS="$(python -c "import os; print(max(1, len(os.sched_getaffinity(0)) // $workers))")"
fi
python -m pytest -n "$workers" --dist loadfile "$@"
