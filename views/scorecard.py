"""Behavioural scorecard: the standard unlearning-benchmark numbers for every checkpoint side by side."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from unlearn_core.analyses.scorecard import DEFINITIONS, MIA_TEXT_MODES, OU, OWN, ScorecardConfig
from unlearn_core.analyses.scorecard.plots import (
    MIA_LABELS,
    SPLIT_METRICS,
    plot_mia_auc,
    plot_model_metric,
    plot_roc,
    plot_split_metric,
)
from unlearn_core.checkpoints.guard import PathOutsideRoot, resolve_inside, workspace_root
from unlearn_core.data.ou_format import (
    OUFormatError,
    compare_with_scorecard,
    load_ou,
    reference_scores,
    scorecard_to_ou_eval,
    summary_of_eval,
)
from unlearn_core.run.audit import get_analysis
from unlearn_core.viz.theme import checkpoint_colors, checkpoint_order
from views._shared import cost, export, state
from views._shared.header import page_header

PAGE = "scorecard"
KEY_COLUMNS = ["model", "role", "definition", "forget_acc", "retain_acc", "forget_p", "retain_p", "forget_rougeL",
               "retain_rougeL", "forget_truth_ratio", "forget_es", "retain_ppl", "forget_quality", "model_utility",
               "mia_auc_mink", "privleak_mink", "forget_leak_at_k", "forget_leak_lo", "forget_leak_hi"]

TEXT_COLUMNS = ("model", "role", "definition", "split", "question", "gold_answer", "generated_answer", "checkpoint",
                "metric", "own_column", "source")


def _numeric(df: pd.DataFrame) -> pd.DataFrame:
    """None (metric does not apply) -> NaN, so numbers format and sort as numbers and show as n/a."""
    df = df.copy()
    for c in df.columns:
        if c not in TEXT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


analysis = get_analysis("scorecard")
ws, bundle_slot = page_header(
    PAGE, "Behavioural scorecard",
    "Does each checkpoint *look* forgotten? Low accuracy / probability / ROUGE-L on the forget set, a retain "
    "set that still works, membership inference near chance, and numbers close to the retain-only model "
    "(hatched: what true deletion looks like). Behaviour alone cannot tell suppression from deletion.")

DEFINITION_HELP = {
    OU: "open-unlearning's exact spans and formulas (EOS appended to answers, answer-only membership inference, "
        "200 new tokens, OU's extraction-strength loop): comparable with published TOFU / MUSE tables",
    OWN: "the project's variant: no EOS, prompt + answer as the MIA text with zlib over the summed loss, 24 new "
         "tokens, extraction strength by the paper (0 when the last answer token is wrong)",
}
BY_DEFINITION = "by the definition"

definition = st.radio("Metric definitions", DEFINITIONS, horizontal=True, key="sc_definition",
                      format_func=lambda d: "open-unlearning (OU)" if d == OU else "own variant",
                      help=DEFINITION_HELP[OU] + ". Own: " + DEFINITION_HELP[OWN] + ".")
with st.expander("Settings", icon=":material/tune:"):
    d = ScorecardConfig(definition=definition)
    s1, s2, s3 = st.columns(3)
    generate = s1.checkbox("Generate answers (ROUGE-L, drill-down)", value=d.generate, key="sc_generate")
    max_new = s1.number_input("Max new tokens (0 = the definition's)", 0, 512, 0, key="sc_max_new",
                              help=f"0 uses {d.new_tokens} for this definition (capped at the model's context)")
    batch = s2.number_input("Batch size", 1, 512, d.batch_size, key="sc_batch")
    min_k = s2.slider("Min-K% share k", 0.05, 1.0, d.min_k, 0.05, key="sc_min_k")
    mia_choice = s3.selectbox("MIA text", [BY_DEFINITION, *MIA_TEXT_MODES], key="sc_mia_text",
                              help=f"{BY_DEFINITION}: {d.mia_mode} here; answer: the answer after its prompt "
                                   "(OU); prompt_answer: the prompt-formatted item (what a QA fine-tune saw); "
                                   "as_text: question + answer as plain text")
    leak_k = s3.number_input("leak@k: samples per forget question (0 = off)", 0, 64, 0, key="sc_leak_k",
                             help="k samples at temperature T per forget question; an item leaks when its gold "
                                  "answer appears in any sample (greedy decoding hides what sampling shows)")
    leak_t = s3.number_input("leak@k temperature T", 0.1, 2.0, 1.0, 0.1, key="sc_leak_t")
    cfg = ScorecardConfig(batch_size=int(batch), max_new_tokens=int(max_new) or None, min_k=float(min_k),
                          generate=bool(generate), mia_text=None if mia_choice == BY_DEFINITION else mia_choice,
                          definition=definition, leak_k=int(leak_k), leak_temperature=float(leak_t))

if state.was_stopped(PAGE):
    st.warning("Stopped. Nothing was written to the results store; run again to compute it.")

result, job = state.stored_result(analysis.name, cfg, ws)
key = job.key
timing = st.session_state.get("scorecard_timing", {})
if result is None:
    prompt = st.empty()
    with prompt.container():
        st.info(f"The scorecard for these {len(ws.names())} checkpoints and settings is not in the results store "
                "yet; the estimate below the button is scaled from runs recorded on this machine.")
        run = st.button("Run scorecard", type="primary", key="run_scorecard", icon=":material/play_arrow:")
        cost.render([analysis.name], ws, {analysis.name: cfg})
    if run:
        prompt.empty()
        result, seconds, from_store = state.run_with_progress(analysis, cfg, ws, label="Scorecard")
        timing[key] = seconds if not from_store else None
        st.session_state["scorecard_timing"] = timing
    else:
        st.stop()

if timing.get(key):
    st.success(f"Computed in {timing[key]:.1f} s and saved to the results store.", icon=":material/check:")
else:
    st.caption(f"Served from the results store `{ws.store_path}`.")

summary = result.to_frame()
names = checkpoint_order(summary["model"].tolist())
colors = checkpoint_colors(names)
summary = _numeric(summary.set_index("model").loc[names].reset_index())


def _styled(df: pd.DataFrame):
    """Checkpoint names in their chart colour, numbers to 3 decimals."""
    num = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    return (df.style.format("{:.3f}", subset=num, na_rep="n/a")
            .map(lambda v: f"color: {colors.get(v, '#262730')}; font-weight: 600", subset=["model"]))


# ------------------------------------------------------------------------------------------------ summary table

st.subheader("Summary")
st.caption(f"Every number on this page was made by the **{result.config.definition}** definition "
           f"({DEFINITION_HELP[result.config.definition]}); the tables carry it in their `definition` column. "
           "PrivLeak = (AUC_ref − AUC) / (1 − AUC_ref) × 100 (MUSE/OU): 0 = as private as the retain-only model, "
           "−100 = the forget set reads as training data. Model utility: harmonic mean of the retain split's p̃, "
           "ROUGE-L recall and truth ratio; OU's real-authors and world-facts splits are not part of an audit, so "
           "they are missing from it.")
key_df = summary[[c for c in KEY_COLUMNS if c in summary.columns]].dropna(axis=1, how="all")  # e.g. no retain set
if "retain_only" in names:
    ref = float(summary.set_index("model").loc["retain_only", "forget_acc"])
    key_df.insert(4, "forget_acc − retain_only", key_df["forget_acc"] - ref)
st.dataframe(_styled(key_df), hide_index=True, width="stretch", key="scorecard_table")
export.table(key_df, "Scorecard key metrics", "sc_key", PAGE, show=False,
             caption="Behavioural scorecard: key metrics per checkpoint")
with st.expander("All columns"):
    st.dataframe(_styled(summary), hide_index=True, width="stretch")
    export.table(summary, "Scorecard all metrics", "sc_all", PAGE, show=False,
                 caption="Behavioural scorecard: every metric per checkpoint")
with st.expander("Metric variants (name them when you compare with other papers)"):
    variants = pd.DataFrame(sorted(result.variants.items()), columns=["metric", "variant"])
    export.table(variants, "Scorecard metric variants", "sc_variants", PAGE, hide_index=True, width="stretch")


# ------------------------------------------------------------------------------------------------ charts

st.subheader("Forget vs retain, per checkpoint" if summary["retain_acc"].notna().any() else
             "Forget set, per checkpoint (no retain set in this workspace)")
metrics = [m for m in SPLIT_METRICS if f"forget_{m}" in summary.columns]
for i in range(0, len(metrics), 2):
    cols = st.columns(2)
    for col, metric in zip(cols, metrics[i:i + 2]):
        with col:
            export.chart(plot_split_metric(summary, metric), f"split_{metric}", PAGE)

st.subheader("Cost of forgetting and closeness to the retain-only model")
c1, c2 = st.columns(2)
with c1:
    if summary["retain_ppl"].notna().any():
        export.chart(plot_model_metric(summary, "retain_ppl", "Retain-set perplexity (lower is better)",
                                       "perplexity (log scale)", log_y=True), "retain_ppl", PAGE)
    else:
        st.info("Retain perplexity needs a retain set (apply one on the Workspace page).")
with c2:
    if summary["forget_quality"].notna().any():
        export.chart(plot_model_metric(summary, "forget_quality", "Forget quality vs retain-only (KS p-value)",
                                       "forget quality (p-value, log scale)", log_y=True, reference=0.05,
                                       reference_label="p = 0.05 (above: indistinguishable from retain-only)"),
                     "forget_quality", PAGE)
    else:
        st.info("Forget quality needs a retain-only model and items with perturbed answers.")

st.subheader("Membership inference (forget = members, holdout = non-members)")
if summary[[c for c in summary.columns if c.startswith("mia_auc_")]].notna().any().any():
    c1, c2 = st.columns(2)
    with c1:
        export.chart(plot_mia_auc(summary), "mia_auc", PAGE)
    with c2:
        roc = result.roc_frame()
        options = [m for m in MIA_LABELS if m in set(roc["metric"])]
        metric = st.selectbox("Attack", options, format_func=MIA_LABELS.get, key="roc_metric",
                              index=options.index("minkpp") if "minkpp" in options else 0)
        export.chart(plot_roc(roc, metric), f"roc_{metric}", PAGE)
else:
    st.info("Membership inference needs a holdout set (apply one on the Workspace page).")


# ------------------------------------------------------------------------------------------------ OU files

st.subheader("open-unlearning result files")
st.caption("Download a checkpoint's scorecard as open-unlearning's TOFU_EVAL / TOFU_SUMMARY json, or attach an OU "
           "EVAL/SUMMARY file to a checkpoint to see its numbers beside these, with the difference. An attached "
           "retain model's EVAL gives every other attached file forget quality and PrivLeak, as OU computes them.")
o1, o2 = st.columns([1, 2])
with o1:
    out_name = st.selectbox("Export checkpoint", names, key="ou_export_model")
    ou_eval = scorecard_to_ou_eval(result, out_name)
    st.download_button("TOFU_EVAL.json", json.dumps(ou_eval, indent=4), f"{out_name}_TOFU_EVAL.json",
                       "application/json", key="ou_export_eval", icon=":material/download:")
    st.download_button("TOFU_SUMMARY.json", json.dumps(summary_of_eval(ou_eval), indent=4),
                       f"{out_name}_TOFU_SUMMARY.json", "application/json", key="ou_export_summary",
                       icon=":material/download:")
with o2:
    attach_to = st.selectbox("Attach to", [*names, "retain model (not loaded)"], key="ou_attach_to")
    upload = st.file_uploader("OU EVAL or SUMMARY json", type=["json"], key="ou_upload")
    p1, p2 = st.columns([4, 1], vertical_alignment="bottom")
    typed = p1.text_input("or a path on this machine", key="ou_path",
                          placeholder="saves/eval/tofu_Llama-3.2-1B_retain90/TOFU_EVAL.json")
    attach_path = p2.button("Attach", key="ou_attach_path", disabled=not typed.strip())
attached = st.session_state.setdefault("ou_imports", {})
if attach_path:
    try:  # a typed path goes through the same guard as the workspace's paths
        path = resolve_inside(typed, workspace_root(), "OU result file")
        attached[attach_to] = load_ou(path)
    except (OUFormatError, PathOutsideRoot) as exc:
        st.error(f"Not attached: {exc}", icon=":material/error:")
if upload is not None and st.session_state.get("ou_last_upload") != (upload.file_id, attach_to):
    st.session_state["ou_last_upload"] = (upload.file_id, attach_to)  # a detached file stays detached
    try:
        attached[attach_to] = load_ou(upload.getvalue(), upload.name)
    except OUFormatError as exc:
        st.error(f"Not an open-unlearning result file: {exc}", icon=":material/error:")
ref_key = next((k for k in attached if k in ("retain_only", "retain model (not loaded)")), None)
for cp, ev in list(attached.items()):
    with st.container(border=True):
        h1, h2 = st.columns([4, 1])
        h1.markdown(f"**{ev.source}** attached to **{cp}** ({ev.kind} file, scorecard definition "
                    f"`{result.config.definition}`)")
        if h2.button("Detach", key=f"ou_detach_{cp}"):
            attached.pop(cp)
            st.rerun()
        for problem in ev.problems:
            st.warning(f"Partial file: {problem}", icon=":material/warning:")
        cmp = compare_with_scorecard(result, cp if cp in names else None, ev)
        if ref_key is not None and cp != ref_key:
            extra = reference_scores(ev, attached[ref_key])
            st.caption("Against the attached retain model's EVAL: forget quality "
                       f"{extra['forget_quality']:.3g}, PrivLeak {extra['privleak']:.3g}")
        agg = _numeric(cmp[cmp.level == "aggregate"].drop(columns=["level", "item"]))
        export.table(agg, f"OU import {cp} aggregates", f"ou_agg_{cp}", PAGE, hide_index=True, width="stretch",
                     caption=f"open-unlearning numbers ({ev.source}) beside the scorecard's for {cp}")
        per_item = cmp[cmp.level == "item"]
        if not per_item.empty:
            with st.expander(f"Per item ({len(per_item)} numbers)"):
                export.table(_numeric(per_item.drop(columns=["level"])), f"OU import {cp} items", f"ou_items_{cp}",
                             PAGE, hide_index=True, width="stretch",
                             caption=f"open-unlearning per-item numbers ({ev.source}) beside the scorecard's")


# ------------------------------------------------------------------------------------------------ drill-down

st.subheader("Per-item drill-down")
items = result.items_frame()
d1, d2 = st.columns([1, 3])
split = d1.radio("Split", sorted(items["split"].unique()), horizontal=True, key="drill_split")
sub = items[items["split"] == split]
questions = sub.drop_duplicates("item").sort_values("item")
item = d2.selectbox("Item", questions["item"].tolist(), key="drill_item",
                    format_func=lambda i: f"#{i}: {questions.set_index('item').loc[i, 'question']}")
rows = sub[sub["item"] == item].set_index("model").loc[[n for n in names if n in set(sub["model"])]].reset_index()
first = rows.iloc[0]
st.markdown(f"**Question** (line {int(first['line'])}): {first['question']}  \n**Gold answer:** {first['gold_answer']}")
drill = _numeric(rows[["model", "generated_answer", "p", "acc", "rougeL_recall", "truth_ratio", "es"]])
st.dataframe(_styled(drill), hide_index=True, width="stretch", key="drill_table")
export.table(drill, f"Scorecard item {split} {item}", "sc_drill", PAGE, show=False,
             caption=f"Per-model answers to {split} item {item}")
with bundle_slot:
    export.bundle_button(PAGE, "Download all charts and tables (zip)")
