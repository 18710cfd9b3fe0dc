"""Decodability probe: is the forgotten answer still linearly readable from the checkpoint's own hidden states?"""

from __future__ import annotations

import streamlit as st

from views._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.analyses.decodability.plots import (
        LAYER_METRICS,
        plot_decodability_layers,
        plot_decodability_summary,
    )

    shown = ("forget_acc", "forget_minus_holdout_acc", "forget_p", "holdout_acc", "retain_cv_acc")
    metric = st.radio("Per-block measure", shown, format_func=lambda m: LAYER_METRICS[m].split(" (")[0],
                      horizontal=True, key="decodability_metric")
    heads = ", ".join(f"{m}: block {li}" for m, li in result.layer.items())
    reads = ("a logistic regression over the retain answers' target tokens" if result.readout == "classes" else
             "a tuned lens: an affine map to the last block's states, fitted on every retain position, read through "
             "the checkpoint's own final norm and unembedding (any token of the vocabulary)")
    st.caption(f"Readout: {reads}. Headline block per checkpoint (best cross-validated retain accuracy below the last "
               f"block, chosen without forget labels): {heads}. Evidence: the probe's p of the answer's key token "
               "(its first token; on sentences the first that tells it from its perturbed answers) over the "
               "uninformed probe (the token's frequency among retain targets); 100% = as decodable as in the "
               "original.")
    return [plot_decodability_layers(result, metric), plot_decodability_summary(result)]


render("decodability", plots=plots, main=("layer", "readout"),
       intro=("Fits a linear probe on each checkpoint's OWN hidden states of retain facts (every block) to predict the "
              "answer's key token, then reads the forget and holdout facts with it: a classifier over the retain "
              "answers' tokens, or, where those cannot name the forget answers (invented sentence answers), a tuned "
              "lens over the whole vocabulary through the checkpoint's own head. Nothing "
              "from the original is injected, so a retrained model cannot be 'restored': forget facts decoded "
              "clearly better than by the retain-only reference, or than the holdout facts, were suppressed."))
