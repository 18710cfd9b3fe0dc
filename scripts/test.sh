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
python -m pytest "$@"
