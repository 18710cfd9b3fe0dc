"""The data check as a page section: read from the results store (no model loaded on a warm start), else computed
(seconds), then drawn: its warnings first, the prompt exactly as the model sees it, the per-item table."""

from __future__ import annotations

import streamlit as st

from unlearn_core.analyses.data_check import SPEC, DataCheckResult
from views._shared import export, state

NUM = st.column_config.NumberColumn(format="%.3f")
SHOW = {"error": st.error, "warning": st.warning, "info": st.info}
ICON = {"error": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}


def result(ws: state.Workspace | None = None) -> DataCheckResult:
    """This workspace's data check: from the store if there, else computed now and stored."""
    ws = ws or state.workspace()
    hit, job = state.stored_result(SPEC, None, ws)
    if hit is not None:
        return hit
    with st.spinner("Data check: reading the forget, retain and holdout sets with the original ..."):
        check, _ = state.run_or_serve(job, ws)
    return check


def render(check: DataCheckResult, page: str) -> None:
    """Warnings (or one line saying the data fits), then the details in an expander."""
    st.subheader("Data check")
    counts = " · ".join(f"{s.split}: the {check.model} model answers **{s.n_known} of {s.n}**"
                        for s in check.splits)
    st.caption(f"Before any probe: does the {check.model} model know what the audit assumes? {counts}. It should "
               "know the forget and retain sets and not the holdout set.")
    for w in check.warnings:
        SHOW[w.level](f"**Data check {w.level}:** {w.message}", icon=ICON[w.level])
    if check.ok:
        st.success("The data fits the audit: the original knows the forget and retain sets, not the holdout set; "
                   "answer lengths suit the metrics; no question is in two splits.", icon=":material/check:")
    with st.expander("What the model sees, and every item", icon=":material/visibility:",
                     expanded=not check.ok):
        items = check.items_frame()
        first = items.iloc[0] if len(items) else None
        if first is not None:
            st.markdown(f"First {first['split']} item (line {first['line']}): the prompt exactly as tokenised, then "
                        f"the {first['answer_tokens']} answer tokens that are scored; the original's greedy answer "
                        f"was {first['generated']!r}.")
            st.code(first["prompt"] + "⟨" + first["answer"] + "⟩", language=None)
        export.table(items, "data check items", "data_check_items", page, hide_index=True, width="stretch",
                     column_config={"p": NUM, "token_acc": NUM})
