"""Layer-wise activation patching (UDS)."""

from __future__ import annotations

from views._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.analyses.patching.plots import plot_patching

    return [plot_patching(result)]


render("patching", plots=plots, main=("threshold",),
       intro=("Patches the original's activations into each unlearned model layer by layer: where the knowledge "
              "still flows decides suppression versus deletion."))
