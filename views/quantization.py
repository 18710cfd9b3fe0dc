"""Quantization probe: re-score the forget set after 8/4-bit rounding of each checkpoint's weights."""

from __future__ import annotations

import streamlit as st

from views._shared.analysis_page import render

METRICS = {"forget_acc": "forget accuracy", "forget_p": "forget answer probability p~", "recovery_acc": "recovery"}


def plots(result) -> list:
    from unlearn_core.analyses.quantization.plots import plot_bucket_changes, plot_quantization

    metric = st.radio("Measure", list(METRICS), format_func=METRICS.get, horizontal=True, key="quant_metric")
    return [plot_quantization(result, metric), plot_bucket_changes(result)]


render("quantization", plots=plots, main=("bits", "bnb", "bucket_bits"),
       intro=("Small weight updates can vanish under 4/8-bit quantization; forgotten answers that return were "
              "suppressed by tiny changes."))
