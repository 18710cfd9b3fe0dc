"""Figures of representation similarity (CKA with the original per block) and the logit lens, checkpoints side by
side in their theme colours, the retain-only reference beside them."""

from __future__ import annotations

import plotly.graph_objects as go

from unlearn_core.viz.charts import line_chart


def plot_cka(result) -> go.Figure:
    """CKA with the original per block, forget prompts solid and retain prompts dashed."""
    df = result.to_frame()
    fig = line_chart(df, "layer", "cka", f"Linear CKA with the original per block ({result.config.pooling} features)",
                     "decoder block (output)", "linear CKA (1 = same representation)", dash_by="split")
    return fig


def plot_logit_lens(result, split: str = "forget", metric: str = "top1_share") -> go.Figure:
    lf = result.lens_frame()
    lf = lf[lf.split == split]
    label = {"top1_share": "share of items with the gold first token at rank 1",
             "mean_prob": "mean probability of the gold first token", "median_rank": "median rank of gold token"}
    return line_chart(lf, "layer", metric, f"Logit lens on {split} prompts ({result.config.lens_head} head)",
                      "decoder block (output)", label.get(metric, metric))
