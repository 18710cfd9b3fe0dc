"""Headline view: per checkpoint, does it only LOOK forgotten (suppressed) or is the knowledge gone (deleted)?

Reads every result already in the results store for this workspace, runs what is missing on request (the default
evidence set first, the CLI's default too; the slower probes on demand) and applies the calibrated rule of
unlearn_core.evidence.verdict through the CLI's own code path (audit.verdict_from_results).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from unlearn_core.analyses.data_check import verdict_before_audit
from unlearn_core.analyses.registry import ANALYSES, all_evidence, default_counted
from unlearn_core.evidence.numbers import verdict_reading
from unlearn_core.evidence.plots import plot_evidence_matrix, plot_probe_validity, plot_verdict_headline
from unlearn_core.evidence.verdict import VerdictConfig
from unlearn_core.report.paper import verdict_table_latex
from unlearn_core.run.audit import data_units, get_analysis, resolve_rule
from unlearn_core.run.provenance import with_utility
from unlearn_core.run.workspace import planted_truth
from views._shared import cost, datacheck, evidence, export, state
from views._shared.header import page_header

PAGE = "verdict"
NUM = st.column_config.NumberColumn(format="%.3f")

ws, bundle_slot = page_header(
    PAGE, "Suppression vs deletion",
    "**Looks forgotten** (behaviour: 1 - forget accuracy / the original's) beside **still inside**: the "
    "recovery a probe gets from the checkpoint MINUS what the same probe gets from a control that never "
    "knew the answers (the retain-only reference on the same items; without one, the holdout split), with "
    "its bootstrap interval. Suppressed = the interval clears the line; deleted = it stays under it.")
names = ws.names()
EVIDENCE = {k: ev.label for k, (_, ev) in all_evidence().items()}
check = datacheck.result(ws)
datacheck.render(check, PAGE)
early = verdict_before_audit(check, names, "retain_only" if ws.spec.retain_only else None)
if early is not None:  # the original never knew the forget set: no probe can say anything about forgetting it
    st.subheader("Verdict per checkpoint")
    st.markdown(f"**{len(early.verdicts)}** nothing to audit")
    export.table(early.to_frame()[["model", "verdict", "original_forget_acc", "reason"]], "verdict per checkpoint",
                 "verdict_table", PAGE, hide_index=True, width="stretch",
                 column_config={"reason": st.column_config.TextColumn(width="large"), "original_forget_acc": NUM})
    st.info("No probe is run on a forget set the original does not know: fix the data or the prompt template on the "
            "Workspace page, then come back.", icon=":material/info:")
    with bundle_slot:
        export.bundle_button(PAGE, "Download all charts and tables (zip)")
    st.stop()

with st.expander("Verdict rule", icon=":material/rule:"):
    d = VerdictConfig()
    c1, c2, c3 = st.columns(3)
    ratio = c1.slider("Looks forgotten if forget acc <= x the original's", 0.0, 1.0, d.forgotten_ratio, 0.05,
                      key="vd_ratio")
    sup = c2.slider("Suppressed if the interval's lower bound >=", 0.0, 1.0, d.suppressed_at, 0.05, key="vd_sup")
    part = c3.slider("Partially suppressed if the lower bound >=", 0.0, 1.0, min(d.partial_at, sup), 0.05,
                     key="vd_part")
    keys = st.multiselect("Evidence that counts", list(EVIDENCE), [k for k in default_counted() if k in EVIDENCE],
                          format_func=lambda k: EVIDENCE.get(k, k), key="vd_keys")
    for k, (_, ev) in all_evidence().items():
        if not ev.counted:
            st.caption(f"Not counted by default: **{k}**: {ev.why_not}.")
    try:
        rule = VerdictConfig(float(ratio), float(sup), float(part), tuple(keys))
    except ValueError as e:
        st.error(f"{e}; using the default rule.")
        rule = d
    with_reference = True
    if ws.spec.retain_only:
        with_reference = st.radio(
            "Control", (True, False), key="vd_control", horizontal=True,
            format_func=lambda r: "retain-only reference" if r else "holdout split only (as without a reference)",
            help="The same stored results read as if this workspace had no retain-only model, as for most public "
                 "unlearned models: each probe is then calibrated against the holdout split, and probes that need "
                 "a deletion reference do not count. Nothing is recomputed; the numbers equal an audit run with "
                 "--no-reference.")

stored = evidence.stored_evidence(ws)
missing_fast = [a for a in evidence.FAST if a not in stored]
offer = [a for a in evidence.MORE if a in ANALYSES and a not in stored]
for a in (*evidence.FAST, *evidence.MORE):
    if state.was_stopped(a):
        st.warning("Stopped. Nothing was written to the results store for the analyses that were running; those that "
                   "finished before are saved.")
        break

with st.container(border=True):
    c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
    with c1:
        label = ("Run " + " + ".join(a.replace("_", " ") for a in missing_fast)) if missing_fast \
            else "Default evidence is in the store"
        run_fast = st.button(label, type="primary", key="run_verdict_fast", icon=":material/play_arrow:",
                             disabled=not missing_fast, help="The default evidence set (the CLI's default): "
                             "the scorecard and the probes that separate the demo lab's planted controls")
    with c2:
        more = st.multiselect("More evidence (slower probes, default settings)", offer, default=[],
                              format_func=lambda a: get_analysis(a).title, key="vd_more",
                              placeholder="all available probes are in the store" if not offer else "choose probes")
        run_more = st.button("Run selected probes", key="run_verdict_more", icon=":material/playlist_play:",
                             disabled=not more)
    cost.render(list(dict.fromkeys([*missing_fast, *more])), ws)
todo = (missing_fast if run_fast else []) + (list(more) if run_more else [])
if run_more and not run_fast:
    todo = missing_fast + todo  # the verdict needs the behavioural half in any case
if todo:
    try:
        ran = state.run_many(todo, ws, {a: e.seconds for a, e in cost.estimates(todo, ws).items() if e is not None})
    except RuntimeError as e:  # a worker's analysis failed: what finished before it is in the store
        st.error(f"{e}. Analyses that finished before it are saved in the results store.", icon=":material/error:")
    except ValueError as e:  # e.g. UNLEARN_AUDIT_JOBS set to something that is not a number of processes
        st.error(f"Nothing was run: {e}.", icon=":material/error:")
    else:
        for a, why in ran.skipped.items():  # this workspace cannot feed the probe (e.g. no retain set)
            st.warning(f"{get_analysis(a).title} skipped: {why}", icon=":material/warning:")
        if ran.done:
            where = f" in {ran.processes} processes ({ran.why})" if ran.processes > 1 else ""
            st.success(f"Computed {', '.join(ran.done)}{where}, {ran.seconds:.0f} s, and saved them to the results "
                       "store.", icon=":material/check:")
    stored = evidence.stored_evidence(ws)

sources = [{"analysis": get_analysis(a).title, "in store": a in stored,
            "settings": ("default" if stored[a].default_config else "custom (newest run)") if a in stored else "",
            "computed": stored[a].created if a in stored else ""}
           for a in (*evidence.FAST, *evidence.MORE, *sorted(set(stored) - {*evidence.FAST, *evidence.MORE}))
           if a in ANALYSES]
if "scorecard" not in stored:
    st.info("No behavioural scorecard for these checkpoints in the results store yet: run the fast evidence above "
            "(or the Behavioural scorecard page) to get a verdict.")
    st.stop()

verdict, numbers = evidence.verdict(stored, ws, rule, with_reference)
# utility beside the verdict: a "suppressed" model that kept a quarter of its retain answers has collapsed
frame = with_utility(verdict.to_frame(), {n: g.set_index("score")["value"].to_dict()
                                          for n, g in numbers.groupby("checkpoint")},
                     next(n for n, r in evidence.roles(ws).items() if r == "original"))
# the deciding comparison in words, its numbers printed on their true side of the line (the table's 3 digits
# could round 0.1496 to 0.150 on the >= 0.15 line)
frame.insert(2, "deciding", [verdict_reading(v, verdict.config) for v in verdict.verdicts])
counts = frame["verdict"].value_counts()
st.markdown(" · ".join(f"**{counts[v]}** {v}" for v in ("suppressed", "partially suppressed", "hidden by a small edit",
                                                          "inconclusive", "deleted", "not forgotten", "unknown",
                                                          "nothing to audit")
                                      if v in counts))
st.caption("**Two axes.** *Suppressed* means someone who holds only the checkpoint gets the answers back: only attacks "
           "that never see the original's weights or states, nor the forget answers (axis *recoverable*: a probe "
           "trained on retain facts, relearning on other facts, quantization, noise, prompt variants) decide it. "
           "Attacks that read the original (axis *edit of the original*: update revert, patching, SAE injection, "
           "guided extraction) show that the checkpoint is a small edit of the original; every real unlearned model "
           "is derived from the original while the reference is trained from the base, so they partly measure "
           "lineage. Alone they give their own call, *hidden by a small edit* (undoing it needs the original), drawn "
           "in its own colour: never *suppressed*, and never *deleted*.")
if verdict.reference is None:
    st.info(("No retain-only reference in this workspace" if with_reference else
             "Read without the retain-only reference (Verdict rule, Control)")
            + ": self-contained probes are calibrated against the holdout split; probes that copy the original's "
            "states are shown as 'needs a deletion reference' and do not count.")

export.chart(plot_verdict_headline(verdict), "verdict_headline", PAGE)
st.subheader("Verdict per checkpoint")
st.markdown(f"**Rule.** {verdict.rule}")
export.table(frame, "verdict per checkpoint", "verdict_table", PAGE, hide_index=True, width="stretch",
             caption="Verdict per checkpoint (" + verdict.rule.replace("%", r"\%") + ")",
             column_config={"reason": st.column_config.TextColumn(width="large"), "forget_acc": NUM,
                            "original_forget_acc": NUM, "looks_forgotten": NUM, "retention_excess": NUM,
                            "ci_low": NUM, "ci_high": NUM, "retain_acc": NUM, "original_retain_acc": NUM,
                            "retain_share": NUM, "ci_low_level": st.column_config.NumberColumn(
                                format="%.4f")})
undecided = [v for v in verdict.verdicts if v.call_if_more_items]
if undecided:
    st.caption("**Not definite with these items.** " + "; ".join(
        f"{v.model} ({v.verdict}): {v.projection()}" for v in undecided)
        + ", if the excess stayed as measured (an interval narrows as 1/sqrt(n): a projection for "
        "planning the next audit, not a promise).")
st.download_button("LaTeX table for a paper (booktabs, intervals, reasons as notes)",
                   verdict_table_latex(verdict, evidence_labels=EVIDENCE), "verdict_table_paper.tex",
                   "application/x-tex", key="dl_verdict_paper_tex", on_click="ignore", icon=":material/article:",
                   type="tertiary")
st.subheader("Evidence behind the verdicts")
export.chart(plot_evidence_matrix(verdict), "verdict_evidence", PAGE)  # short keys: the table names them in full
st.caption("Each cell: the attacked level of the checkpoint minus the control's under the same attack, in units of the "
           "original's lead over the control [95% interval over resampled entities]. Blank: that probe has not been "
           "run for this workspace (add it above). joint_recoverable: the mean of the counted recoverable probes.")
export.table(verdict.evidence_frame(), "verdict evidence", "verdict_evidence_table", PAGE, hide_index=True,
             width="stretch", column_config={k: NUM for k in ("raw_level", "control_level", "excess", "ci_low",
                                                              "ci_high", "lb_corrected")})

truth = planted_truth(ws.spec)
if truth:
    from unlearn_core.analyses.registry import collect_evidence_items
    from unlearn_core.evidence.validity import probe_validity

    st.subheader("Probe validity on the planted controls")
    st.caption("Truth is known for the demo lab's planted controls ("
               + ", ".join(f"{n}: {t}" for n, t in truth.items()) + "). A probe is evidence only if the weakest "
               "suppressed control clears the line while the strongest deletion control stays under it; raw numbers "
               "(uncalibrated) show each probe's false recovery on the deletion controls.")
    items = collect_evidence_items([(n, s.result) for n, s in stored.items()])
    validity = probe_validity(items, truth, "original", verdict.reference, resolve_rule(rule), data_units(ws.data))
    if validity.empty:
        st.info("Run probes on at least one suppressed and one deletion control to measure their validity.")
    else:
        export.chart(plot_probe_validity(validity), "verdict_probe_validity", PAGE)
        export.table(validity, "probe validity", "verdict_probe_validity_table", PAGE, hide_index=True,
                     width="stretch", column_config={k: NUM for k in ("suppressed_worst", "deletion_worst",
                                                                      "false_recovery", "auc_items")})
        bad = validity[(validity["control"] != "uncalibrated (raw recovery)") & ~validity["separates"]]
        for r in bad.itertuples():
            st.caption(f"**{r.evidence}** does not separate here against the {r.control} (suppressed controls' "
                       f"weakest lower bound {r.suppressed_worst:.2f}, deletion controls' strongest upper bound "
                       f"{r.deletion_worst:.2f}).")
if "sae_restoration" in stored:
    from unlearn_core.analyses.sae_restoration.plots import plot_dose_response, plot_expert_activation

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
