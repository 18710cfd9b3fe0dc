"""Prompt-variant probe: ask the forget questions in other ways (paraphrase, few-shot retain context, an answer
prefix, multiple choice) and see whether the answers come back."""

from __future__ import annotations

import streamlit as st

from views._shared.analysis_page import render

METRICS = {"forget_p": "forget answer probability p~", "level_excess": "level excess over the control",
           "recovery_p": "recovery (climb from the plain question)", "retain_p": "retain answer probability p~"}


def plots(result) -> list:
    from unlearn_core.analyses.prompt_variants.plots import plot_multiple_choice, plot_prompt_variants

    for note in result.notes:
        st.caption(note)
    st.caption("The evidence is **best per item**: each item's highest p~ over the paraphrased, few-shot and "
               "answer-prefix prompts, for every checkpoint and the control alike. Multiple choice is in other units "
               "(mass on the gold letter over the option letters; chance = 1/options) and its options contain the "
               "gold answer, so it is shown beside the evidence, not in it.")
    metric = st.radio("Measure", list(METRICS), format_func=METRICS.get, horizontal=True, key="pv_metric")
    return [plot_prompt_variants(result, metric), plot_multiple_choice(result)]


render("prompt_variants", plots=plots, main=("k_shots", "prime", "multiple_choice"),
       intro=("Black-box attacks an attacker holding only the checkpoint can run at any model size: suppression tied "
              "to the trained question's wording gives way to a rephrased question, a few retain QA pairs before "
              "it, or an affirmative start of the answer."))
