"""Compare two audits: two report.json files (the CLI's --out folders, or uploads) side by side through
unlearn_core.report.compare, the code behind `python -m unlearn_core compare A B`."""

from __future__ import annotations

import json

import streamlit as st

from unlearn_core.checkpoints.guard import PathOutsideRoot, resolve_inside, workspace_root
from unlearn_core.report.compare import CompareError, compare_reports, load_report
from views._shared import export
from views._shared.header import page_header

PAGE = "compare"
NUM = st.column_config.NumberColumn(format="%.3f")

root = workspace_root()
page_header(PAGE, "Compare audits",
            "Two audits' report.json (from `python -m unlearn_core audit --out DIR`): each checkpoint's two calls "
            "with their deciding numbers, whether a change is larger than the intervals, and how the runs differ "
            "(settings, rule, data, libraries, weights)."
            + (f" Paths must stay inside the workspace root `{root}`." if root else ""))


def _side(label: str, key: str):
    c1, c2 = st.columns([3, 2])
    path = c1.text_input(f"Audit {label}: report.json or its --out folder", key=f"cmp_path_{key}")
    upload = c2.file_uploader(f"... or upload audit {label}'s report.json", type=["json"], key=f"cmp_file_{key}")
    try:
        if upload is not None:
            report = json.loads(upload.getvalue())
            if not isinstance(report, dict) or not isinstance(report.get("checkpoints"), dict):
                raise CompareError(f"{upload.name}: not an audit report (no \"checkpoints\" object)")
            return report
        if path.strip():
            return load_report(resolve_inside(path.strip(), root, f"Audit {label}"))
    except (CompareError, PathOutsideRoot, ValueError) as e:
        st.error(str(e))
    return None


a, b = _side("A", "a"), _side("B", "b")
if a is None or b is None:
    st.info("Give both audits to compare them.")
    st.stop()

comp = compare_reports(a, b)
st.markdown(f"**{comp.summary()}**")
st.caption("*Within the intervals*: the call changed but the two 95% intervals of the deciding number overlap, so "
           "the evidence did not move more than its own uncertainty (a number drawn on two sides of a line). "
           "*Intervals apart*: a real change.")
export.table(comp.verdicts, "verdicts A vs B", "cmp_verdicts", PAGE, hide_index=True, width="stretch",
             column_config={c: NUM for c in ("retention_A", "ci_low_A", "ci_high_A", "retention_B", "ci_low_B",
                                             "ci_high_B", "shift")})
st.subheader("Evidence per probe")
export.table(comp.evidence, "evidence A vs B", "cmp_evidence", PAGE, hide_index=True, width="stretch",
             column_config={c: NUM for c in ("excess_A", "ci_low_A", "ci_high_A", "excess_B", "ci_low_B",
                                             "ci_high_B", "shift")})
st.subheader("How the runs differ")
differ = comp.runs[~comp.runs["same"]].astype({"A": str, "B": str})
if differ.empty:
    st.success("Made the same way: same data, settings, rule, libraries and weights.", icon=":material/check:")
else:
    export.table(differ, "run differences", "cmp_runs", PAGE, hide_index=True, width="stretch")
