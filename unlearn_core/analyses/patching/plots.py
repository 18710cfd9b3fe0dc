"""Figure of layer-wise activation patching: the answer log-prob drop per layer, per source checkpoint."""

from __future__ import annotations

import plotly.graph_objects as go

from unlearn_core.viz.theme import apply_plotly, checkpoint_colors, checkpoint_order


def plot_patching(result, title: str = "Layer-wise patching: answer log-prob drop") -> go.Figure:
    """D_l per layer for every source checkpoint (retain-only = D1, the deletion reference)."""
    df = result.to_frame()
    names = checkpoint_order(df["model"].unique().tolist())
    colors = checkpoint_colors(names)
    fig = go.Figure()
    for name in names:
        sub = df[df["model"] == name]
        label = f"{name} (UDS {result.uds.get(name, float('nan')):.2f})"
        fig.add_scatter(x=sub["layer"], y=sub["drop"], mode="lines+markers", name=label,
                        line=dict(color=colors[name], dash="dot" if name == result.reference else "solid"))
    return apply_plotly(fig, title, "patched block output (layer index)", "drop in mean answer log-prob (nats)")
