"""Representation similarity (linear CKA per layer) and the logit lens."""

from __future__ import annotations

import streamlit as st

from views._shared.analysis_page import render

LENS_METRICS = {"top1_share": "share at rank 1", "mean_prob": "mean probability", "median_rank": "median rank"}


def plots(result) -> list:
    from unlearn_core.analyses.representation.plots import plot_cka, plot_logit_lens

    figs = [plot_cka(result)]
    if result.config.logit_lens:
        c1, c2 = st.columns(2)
        split = c1.radio("Logit lens on", ["forget", "retain"], horizontal=True, key="repr_lens_split")
        metric = c2.radio("Logit lens measure", list(LENS_METRICS), format_func=LENS_METRICS.get, horizontal=True,
                          key="repr_lens_metric")
        figs.append(plot_logit_lens(result, split, metric))
    return figs


render("representation", plots=plots,
       main=("pooling", "lens_head", "logit_lens"),
       intro=("Compares hidden states with the original layer by layer, and reads the answer out of intermediate "
              "layers: an answer visible mid-network but not at the output is suppressed."))
