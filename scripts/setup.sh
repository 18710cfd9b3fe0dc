#!/usr/bin/env bash
# Creates .venv with the pinned requirements (torch 2.13.0 CPU wheel where the machine has it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -r "${1:-requirements.txt}"
