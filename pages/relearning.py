"""Relearning probe: how fast does fine-tuning on a few facts restore the rest?"""

from __future__ import annotations

from pages._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.viz.plot_robustness import plot_relearning

    return [plot_relearning(result)]


render("relearning", "unlearn_core.analyses.relearning", plots=plots, main=("steps", "lr", "learn_fraction"),
       intro=("Fine-tunes on part of the forget set and measures the held-out part: fast recovery means the "
              "knowledge was still there."))
