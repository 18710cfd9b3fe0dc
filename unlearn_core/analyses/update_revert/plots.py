"""Figures of the update revert: checkpoints side by side in their theme colours, the retain-only model beside them
(a probe's number means "suppressed" only where it is clearly above what the deletion reference shows)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from unlearn_core.viz.charts import METRIC_LABEL, bar_chart
from unlearn_core.viz.theme import apply_plotly, checkpoint_colors, checkpoint_order


def plot_update_revert(result, metric: str = "recovery_p") -> go.Figure:
    """Forget recovery as more of each matrix's update is undone (top-k singular directions, log2 axis), the
    retain-only reference dashed: a suppression edit gives its answers back at a rank where the reference gains
    little; the verdict reads the gap at the headline rank (dotted line)."""
    df = result.to_frame()
    df = df[df.attack != "plain"]
    names = checkpoint_order(df.model.unique())
    colors = checkpoint_colors(names)
    fig = go.Figure()
    for n in names:
        d = df[df.model == n].sort_values("rank")
        ref = n == "retain_only"
        fig.add_trace(go.Scatter(x=d["rank"], y=d[metric], mode="lines+markers",
                                 name=n + (" (deletion reference)" if ref else ""),
                                 line={"color": colors[n], "dash": "dash" if ref else "solid",
                                       "width": 3 if ref else 2},
                                 hovertemplate=f"{n}<br>top %{{x}} directions undone: %{{y:.3f}}<extra></extra>"))
    k = result.config.headline_rank
    top = max(1.0, float(np.nanmax(df[metric]))) if len(df) and df[metric].notna().any() else 1.0
    # a trace, not add_vline: on a log axis plotly places shapes at 10^x
    fig.add_trace(go.Scatter(x=[k, k], y=[0, top], mode="lines", name=f"verdict reads k = {k}",
                             line={"color": "#555555", "dash": "dot", "width": 1}, hoverinfo="skip"))
    ranks = sorted(df["rank"].unique())
    fig.update_xaxes(type="log", tickvals=ranks, ticktext=[str(int(r)) for r in ranks])
    fig.update_layout(legend_title_text="checkpoint")
    return apply_plotly(fig, "Update revert: recovery vs directions undone",
                        "directions undone per matrix (k, log scale)",
                        METRIC_LABEL.get(metric, metric))


def plot_update_spectrum(result) -> go.Figure:
    """Per decoder block, the share of the update's squared norm in its top-k directions (headline k): an edit made
    of a few directions sits near 1, a retrained model's difference from the original is spread out."""
    s = result.spectrum_frame()
    k = result.config.headline_rank
    if s.empty:
        return apply_plotly(go.Figure(), "Update concentration (no weight changed)", "decoder block",
                            f"share of the update's energy in its top {k} directions")
    s = s.assign(e=s.energy_top_k * s.update_norm ** 2, n2=s.update_norm ** 2)
    agg = s.groupby(["model", "layer"], as_index=False)[["e", "n2"]].sum()
    agg["share"] = agg.e / agg.n2
    agg["block"] = agg.layer.map(lambda v: "other (embeddings, head)" if v < 0 else f"block {v}")
    return bar_chart(agg, "block", "share", f"Update concentration: energy in the top {k} directions",
                     "decoder block", f"share of ||W - W_orig||² in top {k} (0-1)")
