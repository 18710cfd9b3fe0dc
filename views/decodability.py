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
    st.caption(f"Headline block per checkpoint (best cross-validated retain accuracy below the last block, chosen "
               f"without forget labels): {heads}. Evidence: the probe's p of the first answer token over the "
               "uninformed probe (its class frequency); 100% = as decodable as in the original.")
    return [plot_decodability_layers(result, metric), plot_decodability_summary(result)]


render("decodability", plots=plots, main=("layer", "c_grid"),
       intro=("Fits a linear probe on each checkpoint's OWN hidden states of retain facts (last prompt token, every "
              "block) to predict the first answer token, then reads the forget and holdout facts with it. Nothing "
              "from the original is injected, so a retrained model cannot be 'restored': forget facts decoded "
              "clearly better than by the retain-only reference, or than the holdout facts, were suppressed."))
