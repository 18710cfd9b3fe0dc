"""Representation similarity (CKA) and logit lens."""

from __future__ import annotations

from pages._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.viz.plot_robustness import plot_cka, plot_logit_lens

    return [plot_cka(result), plot_logit_lens(result)]


render("representation", "unlearn_core.analyses.representation", plots=plots, intro=(
    "Compares hidden states with the original layer by layer, and reads the answer out of intermediate "
    "layers: an answer visible mid-network but not at the output is suppressed."
))
