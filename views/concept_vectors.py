"""Concept vectors: are the forgotten entities' MLP directions still in the weights?"""

from __future__ import annotations

import streamlit as st

from views._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.analyses.concept_vectors.plots import (
        plot_ablation,
        plot_layer_weight_change,
        plot_locate_scores,
        plot_vector_change,
    )

    figs = [plot_vector_change(result), plot_layer_weight_change(result), plot_ablation(result)]
    if result.concepts:
        concept = st.selectbox("Concept (where it is written in the original)", list(result.concepts),
                               key="cv_concept")
        figs.append(plot_locate_scores(result, concept))
    return figs


render("concept_vectors", plots=plots, main=("concepts",),
       intro=("Locates the MLP value vectors that write each forgotten concept and checks whether unlearning "
              "changed them or only the layers after them."))
