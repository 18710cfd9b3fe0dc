"""SAE restoration: re-inject the forgotten concept's SAE features into each unlearned model (dose-response)."""

from __future__ import annotations

import streamlit as st

from pages._shared.analysis_page import render

VARIANTS = {"inject": "inject the original's feature values", "scale": "scale the model's own features"}


def plots(result) -> list:
    from unlearn_core.viz.plot_restoration import plot_dose_response
    from unlearn_core.viz.plot_verdict import plot_expert_activation

    variant = st.radio("Steering variant", list(VARIANTS), format_func=VARIANTS.get, horizontal=True,
                       key="sae_variant")
    return [plot_dose_response(result, variant=variant), plot_expert_activation(result)]


render("sae_restoration", "unlearn_core.analyses.sae_restoration", plots=plots,
       main=("layer", "alphas", "n_fact_features", "n_expert", "headline_alpha"),
       intro=("Trains a sparse autoencoder on the original's activations and re-injects each forgotten fact's own "
              "features (solid; the forget set's shared concept features dotted, random features dashed) into "
              "each unlearned model: answers that come back were suppressed, not deleted."))
