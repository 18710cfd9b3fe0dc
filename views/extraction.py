"""Guided extraction probe."""

from __future__ import annotations

from views._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.analyses.extraction.plots import plot_extraction

    return [plot_extraction(result)]


render("extraction", plots=plots, main=("weights", "tau"),
       intro=("Decodes greedily with the ORIGINAL's logits plus w x (original - checkpoint), restricted to tokens the "
              "original finds plausible: it measures whether the unlearning update points at the forget answers, "
              "not whether the checkpoint alone still knows them (compare the retain-only row)."))
