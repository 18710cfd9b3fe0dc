"""Figures of guided extraction: checkpoints side by side in their theme colours, the retain-only model beside them
(a probe's number means "suppressed" only where it is clearly above what the deletion reference shows)."""

from __future__ import annotations

import plotly.graph_objects as go

from unlearn_core.viz.charts import bar_chart


def plot_extraction(result) -> go.Figure:
    """Forget ROUGE-L recall: each model alone ("plain") vs guided decoding with the original."""
    df = result.to_frame()
    return bar_chart(df, "attack", "forget_rougeL", "Guided extraction: s = s_orig + w (s_orig - s_unl)",
                     "decoder (plain = model alone, w = guidance weight)", "forget ROUGE-L recall (0-1)")
