"""Low-rank update revert: undo the top singular directions of each matrix's update and re-score the forget set."""

from __future__ import annotations

import streamlit as st

from views._shared.analysis_page import render

METRICS = {"recovery_p": "recovery (p~)", "forget_p": "forget answer probability p~", "forget_acc": "forget accuracy"}


def plots(result) -> list:
    from unlearn_core.analyses.update_revert.plots import plot_update_revert, plot_update_spectrum

    metric = st.radio("Measure", list(METRICS), format_func=METRICS.get, horizontal=True, key="revert_metric")
    return [plot_update_revert(result, metric), plot_update_spectrum(result)]


render("update_revert", plots=plots, main=("ranks", "headline_rank"),
       intro=("An unlearning method that adds a small edit on top of the original's weights leaves the answers in "
              "those weights: undoing a few directions of the edit brings them back. A model retrained without the "
              "forget set also moves towards the original when part of its difference is undone, so read each "
              "curve against the retain-only reference's (dashed)."))
