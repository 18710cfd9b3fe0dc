#!/usr/bin/env bash
# Installs everything and opens the dashboard on the demo lab (built on first start, then cached).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
. .venv/bin/activate
exec streamlit run app.py "$@"
