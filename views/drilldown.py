"""Per-item drill-down: each forget item across every checkpoint, behaviour beside what the probes recover."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from unlearn_core.analyses.scorecard import ScorecardConfig
from unlearn_core.report.drilldown import REC_PREFIX, filter_drilldown, item_drilldown
from unlearn_core.run.audit import get_analysis
from views._shared import evidence, export, state
from views._shared.header import page_header

PAGE = "drilldown"
TEXT = ("question", "gold_answer", "checkpoint", "role", "definition", "generated_answer", "recovered_by")

ws, bundle_slot = page_header(
    PAGE, "Item drill-down",
    "Every forget item across every checkpoint: the greedy answer and the scorecard's numbers beside each "
    "stored probe's per-item recovery, (attacked − plain) / (original − plain) clipped to [0, 1]. "
    "*Forgot behaviourally*: the original answers the item exactly and the checkpoint does not.")

stored = evidence.stored_evidence(ws)
if "scorecard" in stored:
    scorecard = stored["scorecard"].result
else:
    prompt = st.empty()
    with prompt.container():
        st.info("The drill-down reads the behavioural scorecard from the results store; it is not there yet for "
                "this workspace.")
        run = st.button("Run scorecard", type="primary", key="drill_run_scorecard", icon=":material/play_arrow:")
    if not run:
        st.stop()
    prompt.empty()
    scorecard, _, _ = state.run_with_progress(get_analysis("scorecard"), ScorecardConfig(), ws, label="Scorecard")
probes = [(name, s.result) for name, s in stored.items() if name != "scorecard"]
recover_at = st.slider("A probe recovers an item at", 0.05, 1.0, 0.5, 0.05, key="drill_recover_at",
                       help="per-item recovery at or above this counts as 'a probe recovers'")
table, skipped = item_drilldown(scorecard, probes, recover_at=recover_at)
rec_cols = [c for c in table.columns if c.startswith(REC_PREFIX)]
if rec_cols:
    st.caption("Probe results found in the store: " + ", ".join(c.removeprefix(REC_PREFIX) for c in rec_cols)
               + f". Scorecard definition: `{scorecard.config.definition}`.")
else:
    st.info("No probe results in the store for this workspace yet: run probes on the headline page or their own "
            "pages to see per-item recovery here.")
for key, why in skipped.items():
    st.warning(f"{key} left out: {why}", icon=":material/warning:")

f1, f2, f3 = st.columns([2, 2, 1])
checkpoints = f1.multiselect("Checkpoints", list(dict.fromkeys(table.checkpoint)), key="drill_checkpoints",
                             placeholder="all")
text = f2.text_input("Search question, gold answer or generation", key="drill_search")
only = f3.toggle("Forgot behaviourally but a probe recovers", key="drill_forgot_recovered")
s1, s2 = st.columns([3, 1])
sortable = [c for c in table.columns if c not in ("question", "gold_answer", "generated_answer")]
sort_by = s1.selectbox("Sort by", sortable, index=sortable.index("item"), key="drill_sort")
descending = s2.toggle("Descending", key="drill_desc")
view = filter_drilldown(table, checkpoints or None, text, only, sort_by, ascending=not descending)
n_flag = int(table.forgot_but_recovered.sum())
st.markdown(f"**{len(view)}** of {len(table)} rows · **{n_flag}** (item, checkpoint) pairs forgot behaviourally "
            "but a probe recovers the answer")


def _fmt(df: pd.DataFrame):
    num = [c for c in df.columns if c not in TEXT and pd.api.types.is_float_dtype(df[c])]
    return df.style.format("{:.3f}", subset=num, na_rep="n/a")


st.dataframe(_fmt(view), hide_index=True, width="stretch", key="drill_all")
export.table(view, "Per-item drill-down", "drill_all", PAGE, show=False,
             caption="Forget items across checkpoints: behaviour and per-item probe recovery")

st.subheader("One item across all checkpoints")
questions = table.drop_duplicates("item").set_index("item")["question"]
item = st.selectbox("Item", questions.index.tolist(), key="drill_one_item",
                    format_func=lambda i: f"#{i}: {questions.loc[i]}")
one = table[table["item"] == item]
st.markdown(f"**Question:** {one.iloc[0]['question']}  \n**Gold answer:** {one.iloc[0]['gold_answer']}")
one = one.drop(columns=["item", "line", "question", "gold_answer"])
st.dataframe(_fmt(one), hide_index=True, width="stretch", key="drill_one")
export.table(one, f"Drill-down item {item}", "drill_one", PAGE, show=False,
             caption=f"Forget item {item} across checkpoints")
with bundle_slot:
    export.bundle_button(PAGE, "Download all tables (zip)")
