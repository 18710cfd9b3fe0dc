"""Training dynamics: checkpoint series (a run's checkpoint-N/ folders, full or LoRA) audited step by step against
the workspace's original and reference, to see when a run starts to look forgotten and whether what the probes find
inside falls with it (deletion) or stays (suppression).

Stored steps are read from the results store by hash on every run of the page (no model loaded); the button computes
only the steps the store does not have, through unlearn_core.run.series, the CLI's --series code path.
"""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from unlearn_core.analyses.registry import ANALYSES, DEFAULT_EVIDENCE_SET
from unlearn_core.checkpoints.guard import PathOutsideRoot, checkpoint_source, workspace_root
from unlearn_core.checkpoints.series_layout import expand_series
from unlearn_core.checkpoints.source import CheckpointError
from unlearn_core.evidence.verdict import VerdictConfig
from unlearn_core.report.plot_dynamics import plot_dynamics
from unlearn_core.run.series import SeriesAuditor, series_table
from views._shared import export, state
from views._shared.header import page_header

PAGE = "dynamics"
NUM = st.column_config.NumberColumn(format="%.3f")

root = workspace_root()
ws, bundle_slot = page_header(
    PAGE, "Training dynamics",
    "A series is a training run's output folder of `checkpoint-N/` subfolders (Hugging Face Trainer layout; "
    "full models or LoRA adapters). Each step is audited as `NAME@N` against this workspace's original and "
    "retain-only reference with the same calibrated rule as the headline page."
    + (f" Folders must stay inside the workspace root `{root}`." if root else ""))

c1, c2 = st.columns([3, 1])
lab_series = Path(ws.spec.original).parent / "extras" / "ga_series"  # the demo lab ships one run as a series
lines = c1.text_area("Series, one per line as NAME=FOLDER", key="dyn_series", height=90,
                     placeholder="ga=/runs/ga_lr2e-5")
every = c2.number_input("Every k-th step (the last always)", min_value=1, value=1, step=1, key="dyn_every")
analyses = st.multiselect("Analyses per step", list(ANALYSES), default=list(DEFAULT_EVIDENCE_SET),
                          key="dyn_analyses", help="The headline page's evidence set by default; scorecard gives "
                          "the behaviour, the probes the retention evidence")

steps, problems = [], []
for i, line in enumerate(lines.splitlines(), 1):
    if not line.strip():
        continue
    name, sep, folder = line.partition("=")
    if not sep or not name.strip() or not folder.strip():
        problems.append(f"line {i}: write NAME=FOLDER")
        continue
    try:
        folder = checkpoint_source(folder.strip(), root, f"Series {name.strip()}")
        steps += expand_series(name.strip(), folder, int(every))
    except (PathOutsideRoot, CheckpointError, ValueError) as e:
        problems.append(f"line {i}: {e}")
for p in problems:
    st.error(p)
if len({s.name for s in steps}) != len(steps):
    st.error("Two series share a name: give each line its own NAME.")
    st.stop()
if not steps:
    st.info("Give one or more series folders above to see their dynamics; steps audited before are read from the "
            "results store, nothing is computed until you ask.")
    if lab_series.is_dir():
        st.button("Use the demo lab's series (gradient ascent saved every 8 steps)", key="dyn_use_lab",
                  icon=":material/timeline:",
                  on_click=lambda: st.session_state.update(dyn_series=f"ga={lab_series}"))
    st.stop()
if "scorecard" not in analyses:
    st.warning("Without the scorecard there is no behaviour (forget accuracy) and no verdict.")

rule = VerdictConfig()
try:
    auditor = SeriesAuditor(ws.spec, ws.data, analyses, state.store(ws), rule)
except (CheckpointError, ValueError, OSError) as e:
    st.error(f"Cannot audit against this workspace: {e}")
    st.stop()
rows = {s.name: r for s in steps if (r := auditor.audit_step(s, stored_only=True)) is not None}
missing = [s for s in steps if s.name not in rows]
status = st.empty()
status.write(f"**{len(steps)} steps** in {len({s.series for s in steps})} series; {len(rows)} from the results "
             "store" + (f", {len(missing)} not audited yet." if missing else "."))
if missing and st.button(f"Audit the {len(missing)} missing steps", type="primary", key="dyn_run"):
    auditor = SeriesAuditor(ws.spec, ws.data, analyses, state.store(ws), rule, loaded=state.models(ws))
    bar = st.progress(0.0, "starting")
    for i, s in enumerate(missing):
        def sub(frac: float, msg: str, i=i, s=s) -> None:
            bar.progress(min((i + frac) / len(missing), 1.0), f"{s.name}: {msg}"[:200])

        try:
            rows[s.name] = auditor.audit_step(s, sub)
        except (CheckpointError, ValueError) as e:
            st.error(f"{s.name}: {e}")
    bar.empty()
    status.write(f"**{len(steps)} steps** in {len({s.series for s in steps})} series; "
                 f"{len(steps) - len(missing)} from the results store, {len(missing)} audited now.")
if not rows:
    st.stop()

df = series_table([rows[s.name] for s in steps if s.name in rows], rule)
for name, part in df.groupby("series", sort=False):
    first = part["first_looks_forgotten"].iloc[0]
    st.markdown(f"**{name}**: first looks forgotten at step "
                f"{'never (in the audited steps)' if math.isnan(first) else int(first)}; {part['reading'].iloc[0]}; "
                f"last step's verdict: {part['verdict'].iloc[-1]}.")
export.chart(plot_dynamics(df, rule.suppressed_at, rule.partial_at), "dynamics", PAGE)
export.table(df.drop(columns=["path", "seconds"]), "series dynamics", "dynamics_table", PAGE, hide_index=True,
             column_config={c: NUM for c in ("forget_acc", "retain_acc", "original_forget_acc", "retention",
                                             "retention_lo", "retention_hi")})
with bundle_slot:
    export.bundle_button(PAGE, "Download all charts and tables (zip)")
