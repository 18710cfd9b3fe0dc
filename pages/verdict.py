"""Headline view: per checkpoint, does it only LOOK forgotten (suppressed) or is the knowledge gone (deleted)?

Reads every result already in the results store for this workspace, runs what is missing on request (scorecard +
patching in seconds; the slower probes on demand) and applies the written rule of unlearn_core.analyses.verdict.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._shared import evidence, export, sidebar, state
from unlearn_core.analyses.verdict import RETENTION_KEYS, VerdictConfig, compute_verdict
from unlearn_core.audit import REGISTRY, get_analysis
from unlearn_core.viz.plot_verdict import plot_evidence_matrix, plot_verdict_headline

PAGE = "verdict"
NUM = st.column_config.NumberColumn(format="%.3f")

export.start_page(PAGE)
ws = state.workspace()
names = ws.names()
st.title("Suppression vs deletion")
st.markdown(sidebar.chips(names), unsafe_allow_html=True)
st.caption("**Looks forgotten** (behaviour: 1 - forget accuracy / the original's) beside **still inside** (the "
           "largest retention score any probe found: SAE restoration, 1 - UDS, keyword / quantization / relearning "
           "recovery, ...). Two tall bars = suppressed; a tall grey bar and a short dark one, like the hatched "
           "green retain-only model that never saw the forget set = deleted.")
bundle_slot = st.container()

with st.expander("Verdict rule thresholds", icon=":material/rule:"):
    d = VerdictConfig()
    c1, c2, c3 = st.columns(3)
    ratio = c1.slider("Looks forgotten if forget acc <= x the original's", 0.0, 1.0, d.forgotten_ratio, 0.05,
                      key="vd_ratio")
    sup = c2.slider("Suppressed if r >=", 0.0, 1.0, d.suppressed_at, 0.05, key="vd_sup")
    part = c3.slider("Partially suppressed if r >=", 0.0, 1.0, min(d.partial_at, sup), 0.05, key="vd_part")
    keys = st.multiselect("Retention scores that count as evidence", list(RETENTION_KEYS), list(RETENTION_KEYS),
                          format_func=lambda k: RETENTION_KEYS[k], key="vd_keys")
    try:
        rule = VerdictConfig(float(ratio), float(sup), float(part), tuple(keys))
    except ValueError as e:
        st.error(f"{e}; using the default rule.")
        rule = d

stored = evidence.stored_evidence(ws)
missing_fast = [a for a in evidence.FAST if a not in stored]
offer = [a for a in evidence.MORE if a in REGISTRY and a not in stored]
for a in (*evidence.FAST, *evidence.MORE):
    if state.was_stopped(a):
        st.warning("Stopped. Nothing was written to the results store for the analysis that was running.")
        break

with st.container(border=True):
    c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
    with c1:
        label = ("Run " + " + ".join(missing_fast)) if missing_fast else "Fast evidence is in the store"
        run_fast = st.button(label, type="primary", key="run_verdict_fast", icon=":material/play_arrow:",
                             disabled=not missing_fast, help="Behavioural scorecard and layer-wise patching (UDS): "
                             "seconds on the demo lab")
    with c2:
        more = st.multiselect("More evidence (slower probes, default settings)", offer, default=[],
                              format_func=lambda a: get_analysis(a).title, key="vd_more",
                              placeholder="all available probes are in the store" if not offer else "choose probes")
        run_more = st.button("Run selected probes", key="run_verdict_more", icon=":material/playlist_play:",
                             disabled=not more)
todo = (missing_fast if run_fast else []) + (list(more) if run_more else [])
if run_more and not run_fast:
    todo = missing_fast + todo  # the verdict needs the behavioural half in any case
if todo:
    for i, a in enumerate(todo):
        analysis = get_analysis(a)
        _, seconds, _ = state.run_with_progress(analysis, analysis.default_config(), ws,
                                                label=f"{i + 1}/{len(todo)} {analysis.title}")
    st.success(f"Computed {', '.join(todo)} and saved them to the results store.", icon=":material/check:")
    stored = evidence.stored_evidence(ws)

sources = [{"analysis": get_analysis(a).title, "in store": a in stored,
            "settings": ("default" if stored[a].default_config else "custom (newest run)") if a in stored else "",
            "computed": stored[a].created if a in stored else ""}
           for a in (*evidence.FAST, *evidence.MORE, *sorted(set(stored) - {*evidence.FAST, *evidence.MORE}))
           if a in REGISTRY]
if "scorecard" not in stored:
    st.info("No behavioural scorecard for these checkpoints in the results store yet: run the fast evidence above "
            "(or the Behavioural scorecard page) to get a verdict.")
    st.stop()

scores, numbers = evidence.scores_by_checkpoint(stored, names)
verdict = compute_verdict(scores, rule, original="original")
frame = verdict.to_frame()
counts = frame["verdict"].value_counts()
st.markdown(" · ".join(f"**{counts[v]}** {v}" for v in ("suppressed", "partially suppressed", "deleted",
                                                          "not forgotten", "unknown") if v in counts))

export.chart(plot_verdict_headline(verdict), "verdict_headline", PAGE)
st.subheader("Verdict per checkpoint")
st.markdown(f"**Rule.** {verdict.rule}")
export.table(frame, "verdict per checkpoint", "verdict_table", PAGE, hide_index=True, width="stretch",
             caption="Verdict per checkpoint (" + verdict.rule.replace("%", r"\%") + ")",
             column_config={"reason": st.column_config.TextColumn(width="large"), "forget_acc": NUM,
                            "original_forget_acc": NUM, "looks_forgotten": NUM, "retention": NUM,
                            **{k: NUM for k in RETENTION_KEYS}})
st.subheader("Evidence behind the verdicts")
export.chart(plot_evidence_matrix(verdict, {k: v.split(" (")[0] for k, v in RETENTION_KEYS.items()}),
             "verdict_evidence", PAGE)
st.caption("Blank cells: that probe has not been run for this workspace (add it above).")
if "sae_restoration" in stored:
    from unlearn_core.viz.plot_restoration import plot_dose_response
    from unlearn_core.viz.plot_verdict import plot_expert_activation

    sae = stored["sae_restoration"].result
    st.subheader("Restoration: steering the original's SAE features back in")
    st.caption(f"Layer {sae.layer} of {sae.n_layers}; SAE explained variance {sae.sae_quality.explained_variance:.2f}, "
               f"L0 {sae.sae_quality.l0:.0f}. Solid: each forgotten fact's own {sae.n_fact_features} features; "
               "dotted: the forget set's shared concept features; dashed: random features (the control). The "
               "right panel is the retain-set side effect of the same steering.")
    export.chart(plot_dose_response(sae), "verdict_restoration", PAGE)
    export.chart(plot_expert_activation(sae), "verdict_expert_features", PAGE)
    with st.expander("Expert features and their top activating prompts", expanded=False):
        export.table(sae.features_frame(), "SAE concept features", "verdict_sae_features", PAGE, hide_index=True,
                     width="stretch")
        export.table(sae.fact_features_frame(), "SAE fact features", "verdict_sae_fact_features", PAGE,
                     hide_index=True, width="stretch")
with st.expander("Evidence sources in the results store", expanded=True):
    export.table(pd.DataFrame(sources), "verdict evidence sources", "verdict_sources", PAGE, hide_index=True,
                 width="stretch")
with st.expander(f"Every number read from the store ({len(numbers)} scores)", expanded=False):
    export.table(numbers, "verdict all scores", "verdict_numbers", PAGE, hide_index=True, width="stretch",
                 column_config={"value": NUM})
with bundle_slot:
    export.bundle_button(PAGE, "Download all charts and tables (zip)")
