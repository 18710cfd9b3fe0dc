"""Guided extraction probe."""

from __future__ import annotations

from pages._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.viz.plot_robustness import plot_extraction

    return [plot_extraction(result)]


render("extraction", "unlearn_core.analyses.extraction", plots=plots, main=("weights", "tau"),
       intro=("Tries prompts that guide the model towards the forgotten answers (prefixes, paraphrases)."))
