"""Quantization probe: does rounding the weights bring the knowledge back?"""

from __future__ import annotations

from pages._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.viz.plot_robustness import plot_bucket_changes, plot_quantization

    return [plot_quantization(result), plot_bucket_changes(result)]


render("quantization", "unlearn_core.analyses.quantization", plots=plots, intro=(
    "Small weight updates can vanish under 4/8-bit quantization; forgotten answers that return were "
    "suppressed by tiny changes."
))
