"""Figures of quantization: checkpoints side by side in their theme colours, the retain-only model beside them
(a probe's number means "suppressed" only where it is clearly above what the deletion reference shows)."""

from __future__ import annotations

import plotly.graph_objects as go

from unlearn_core.viz.charts import METRIC_LABEL, bar_chart
from unlearn_core.viz.theme import apply_plotly


def plot_quantization(result, metric: str = "forget_acc") -> go.Figure:
    """Forget score (or recovery) per bit width, unquantized ("plain") first; retain-only as the floor."""
    df = result.to_frame()
    if metric.startswith("recovery"):
        df = df[df.attack != "plain"]
    return bar_chart(df, "attack", metric, f"Quantization probe: {metric.replace('_', ' ')} by precision",
                     "weight precision (plain = unquantized)", METRIC_LABEL.get(metric, metric))


def plot_bucket_changes(result) -> go.Figure:
    """Share of weights whose 4-bit bucket differs from the original's, per decoder block (-1 = outside blocks)."""
    b = result.buckets_frame()
    if b.empty:
        return apply_plotly(go.Figure(), "Weight bucket changes (no unlearned checkpoints)", "block", "share")
    b = b.assign(w=b.bucket_changed_share * b.n_weights)
    agg = b.groupby(["model", "layer"], as_index=False)[["w", "n_weights"]].sum()
    agg["share"] = agg.w / agg.n_weights
    agg["block"] = agg.layer.map(lambda v: "other (head, ...)" if v < 0 else f"block {v}")
    return bar_chart(agg, "block", "share",
                     f"Weights that change {result.config.bucket_bits}-bit bucket vs the original (original's scales)",
                 "decoder block", "share of weights in a different bucket")
