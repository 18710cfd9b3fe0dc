"""Prompt attribution: which prompt tokens drive the gold answer, per checkpoint, and how unlearning moved them."""

from __future__ import annotations

import streamlit as st

from views._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.analyses.attribution.plots import plot_key_share, plot_token_heatmap

    st.markdown("**One prompt, token by token**")
    c1, c2, c3, c4 = st.columns(4)
    split = c1.selectbox("Split", sorted({it.split for it in result.items}), key="attr_split")
    prompts = {it.item: it.prompt for it in result.items if it.split == split}  # ids: items are not comparable
    item = c2.selectbox("Item", list(prompts), format_func=lambda i: f"{i}: {prompts[i][-60:]}", key="attr_item")
    model = c3.selectbox("Checkpoint", [m for m in result.models[1:]] or list(result.models), key="attr_model")
    method = c4.selectbox("Method", list(result.methods), key="attr_method")
    return [plot_key_share(result, method=method), plot_token_heatmap(result, item, model, split, method)]


render("attribution", plots=plots, main=("methods", "splits", "ig_steps"),
       intro=("Which prompt tokens drive the answer; an unlearned model that still leans on the entity's keywords "
              "may only be suppressing the answer."))
