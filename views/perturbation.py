"""Activation perturbation probe."""

from __future__ import annotations

from views._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.analyses.perturbation.plots import plot_perturbation

    return [plot_perturbation(result)]


render("perturbation", plots=plots, main=("sigmas", "layers", "k"),
       intro=("Adds small noise to activations: suppressed knowledge often resurfaces, deleted knowledge does not."))
