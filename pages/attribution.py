"""Prompt attribution: does an unlearned model still attend to the forgotten entity's keywords?"""

from __future__ import annotations

from pages._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.viz.plot_attribution import plot_key_share

    return [plot_key_share(result)]


render("attribution", "unlearn_core.analyses.attribution", plots=plots, intro=(
    "Which prompt tokens drive the answer; an unlearned model that still leans on the entity's keywords "
    "may only be suppressing the answer."
))
