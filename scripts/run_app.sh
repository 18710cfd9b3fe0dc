#!/usr/bin/env bash
# Installs everything and opens the dashboard on the demo lab (built on first start, then cached).
# `--prepare-only` installs, builds the lab and fills the results store, then exits without serving.
# Listens on 127.0.0.1 only. `--network` (or UNLEARN_AUDIT_SERVE_NETWORK=1) serves on every interface, and only
# with a workspace root (UNLEARN_AUDIT_ROOT=/folder): every path typed in the browser must then stay inside it.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
network="${UNLEARN_AUDIT_SERVE_NETWORK:-0}"
prepare_only=0
for a in "$@"; do
    if [ "$a" = "--network" ]; then network=1
    elif [ "$a" = "--prepare-only" ]; then prepare_only=1
    else args+=("$a"); fi
done
address=(--server.address 127.0.0.1)
if [ "$network" = "1" ]; then
    if [ -z "${UNLEARN_AUDIT_ROOT:-}" ] || [ ! -d "${UNLEARN_AUDIT_ROOT}" ]; then
        echo "refusing to serve on the network without a workspace root: set UNLEARN_AUDIT_ROOT to an existing" \
             "folder (every path typed in the browser must stay inside it)" >&2
        exit 2
    fi
    address=(--server.address 0.0.0.0)
fi
bash scripts/setup.sh requirements.txt
. .venv/bin/activate
# build the demo lab here, with its progress on the terminal, before the browser page opens (cached: instant later)
if [ -z "${UNLEARN_AUDIT_LAB_DIR:-}" ]; then
    config="${UNLEARN_AUDIT_LAB_CONFIG:-default}"
    lab_dir="$(python -c "from unlearn_core.lab.build import default_lab_dir; print(default_lab_dir('$config'))")"
    [ -f "$lab_dir/lab.json" ] || python -m unlearn_core lab build --out "$lab_dir" --config "$config"
else
    lab_dir="$UNLEARN_AUDIT_LAB_DIR"
fi
# then the default evidence set into the store the app reads (same store keys as the pages), so the headline page
# shows verdicts on its first visit; UNLEARN_AUDIT_PREFILL=0 skips it (the page then offers a Run button). Done again
# when the evidence set or any of its default settings changed since the last first audit (the store key includes the
# settings, so an older install's stored result would not be found); the audit then computes only what is missing.
first_audit() {  # first_audit REPORT stale: exit 0 if a first audit is due; first_audit REPORT record: after one
    python - "$@" <<'PY'
import json, sys
from dataclasses import asdict
from pathlib import Path
from unlearn_core.analyses.registry import DEFAULT_EVIDENCE_SET, get_spec
report, mode = Path(sys.argv[1]), sys.argv[2]
stamp = report.parent / "defaults.json"
want = json.loads(json.dumps({n: asdict(get_spec(n).default_config()) for n in DEFAULT_EVIDENCE_SET}, default=str))
if mode == "record":
    stamp.write_text(json.dumps(want, sort_keys=True))
    sys.exit(0)
try:
    done = json.loads(report.read_text()).get("analyses", {})
    had = json.loads(stamp.read_text())
except (OSError, ValueError):
    sys.exit(0)
sys.exit(0 if set(DEFAULT_EVIDENCE_SET) - set(done) or had != want else 1)
PY
}
report="$lab_dir/first-audit/report.json"
if [ "${UNLEARN_AUDIT_PREFILL:-1}" = "1" ] && [ -f "$lab_dir/lab.json" ] && first_audit "$report" stale
then
    echo "First start: computing the headline page's evidence for the demo lab (once) ..."
    # processes: the CLI's default (one per core, as many copies as fit in half the free memory; UNLEARN_AUDIT_JOBS)
    if python -m unlearn_core audit --lab "$lab_dir" --out "$lab_dir/first-audit" \
        --store "${UNLEARN_AUDIT_STORE:-$lab_dir/results.sqlite}"; then
        first_audit "$report" record
    else
        echo "the first audit failed; the headline page offers to run it (Run button)" >&2
    fi
fi
[ "$prepare_only" = "1" ] && exit 0
exec streamlit run app.py "${address[@]}" ${args[@]+"${args[@]}"}
