"""SAE restoration: does re-injecting sparse-autoencoder features of the original bring the answers back?"""

from __future__ import annotations

from pages._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.viz.plot_restoration import plot_dose_response, plot_expert_features

    return [plot_dose_response(result), plot_expert_features(result)]


render("sae_restoration", "unlearn_core.analyses.sae_restoration", plots=plots, intro=(
    "Trains a sparse autoencoder on the original's activations and re-injects the forgotten concept's "
    "features into each unlearned model: answers that return with a small dose were suppressed."
))
