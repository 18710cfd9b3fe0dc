"""Figures of SAE restoration: dose-response over alpha, the layer sweep, and the expert features chosen."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from unlearn_core.viz.theme import apply_plotly, checkpoint_colors, checkpoint_order


def plot_dose_response(result, metric: str = "restoration_p", variant: str = "inject",
                       title: str | None = None) -> go.Figure:
    """Restoration vs alpha per checkpoint (left: forget set; fact features solid, concept set dotted, random
    control dashed) and the retain-set side effect of the same steering (right: change in retain p~). One legend
    entry per checkpoint (colour) plus a key for the line styles, so the legend stays readable in a paper."""
    df = result.to_frame()
    df = df[df["variant"].isin([variant, "none"])]
    names = checkpoint_order(df["model"].unique().tolist())
    colors = checkpoint_colors(names)
    styles = (("fact", "solid"), ("concept", "dot"), ("random", "dash"))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("forget set: restoration", "retain set: side effect"))
    for name in names:
        for feats, dash in styles:
            sub = df[(df["model"] == name) & (df["features"].isin([feats, "none"]))].sort_values("alpha")
            f, r = sub[sub["split"] == "forget"], sub[sub["split"] == "retain"]
            y0 = f[metric].fillna(0.0) if metric.startswith("restoration") else f[metric]
            common = dict(mode="lines+markers", line=dict(color=colors[name], dash=dash), legendgroup=name,
                          name=name, hovertemplate=f"{name}, {feats} features<br>alpha %{{x:g}}: %{{y:.3f}}"
                                                   "<extra></extra>")
            fig.add_scatter(x=f["alpha"], y=y0, showlegend=feats == "fact", row=1, col=1, **common)
            fig.add_scatter(x=r["alpha"], y=r["delta_p"], showlegend=False, row=1, col=2, **common)
    for feats, dash in styles:  # line-style key
        fig.add_scatter(x=[None], y=[None], mode="lines", name=f"{feats} features", legendgroup="features",
                        line=dict(color="#555555", dash=dash), row=1, col=1)
    apply_plotly(fig, title or f"SAE restoration dose-response ({variant}, layer {result.layer})",
                 "steering strength alpha", "restoration rate (0-1)")
    fig.update_xaxes(title_text="steering strength alpha", row=1, col=2)
    fig.update_yaxes(title_text="change in retain p~ (steered - plain)", row=1, col=2)
    fig.update_layout(height=480, legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, xanchor="left"),
                      margin=dict(b=130))
    return fig


def plot_layer_sweep(frame: pd.DataFrame, title: str = "SAE restoration per layer (fact features, best alpha)"
                     ) -> go.Figure:
    """Restoration per steered layer and checkpoint (solid), the random-feature control (dashed)."""
    names = checkpoint_order(frame["model"].unique().tolist())
    colors = checkpoint_colors(names)
    fig = go.Figure()
    for name in names:
        sub = frame[frame["model"] == name].sort_values("layer")
        fig.add_scatter(x=sub["layer"], y=sub["sae_restoration_fact"].fillna(0.0), mode="lines+markers", name=name,
                        legendgroup=name, line=dict(color=colors[name]))
        fig.add_scatter(x=sub["layer"], y=sub["sae_restoration_random"].fillna(0.0), mode="lines",
                        name=f"{name} (random features)", legendgroup=name, showlegend=False,
                        line=dict(color=colors[name], dash="dash", width=1))
    fig.update_xaxes(tickmode="linear", dtick=1)
    fig.update_yaxes(range=[0, 1.05])
    return apply_plotly(fig, title, "steered block output (layer index)", "restoration rate (0-1)")


def expert_features_table(result) -> pd.DataFrame:
    """The expert features with forget/retain mean activation and their top activating prompts."""
    return result.features_frame()


def plot_expert_features(result, title: str | None = None) -> go.Figure:
    """Table figure of the expert features (for export next to the dose-response curves)."""
    df = result.features_frame()
    cols = [c for c in df.columns]
    fig = go.Figure(go.Table(
        header=dict(values=cols, align="left"),
        cells=dict(values=[df[c].map(lambda v: f"{v:.3f}" if isinstance(v, float) else v) for c in cols],
                   align="left")))
    fig.update_layout(title=title or f"Concept SAE features, layer {result.layer}: top activating prompts")
    return fig


def plot_expert_activation(result, title: str | None = None) -> go.Figure:
    """Expert SAE features: mean activation on forget vs retain prompts in the original (why they were chosen)."""
    df = result.features_frame().sort_values("rank")
    labels = [f"#{int(f)}" for f in df["feature"]]
    fig = go.Figure()
    fig.add_bar(x=labels, y=df["mean_forget"], name="forget prompts", marker_color="#D55E00")
    fig.add_bar(x=labels, y=df["mean_retain"], name="retain prompts", marker_color="#0072B2")
    fig.update_layout(barmode="group", legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    fig.update_xaxes(type="category", tickangle=-45)
    apply_plotly(fig, title or f"Expert SAE features, layer {result.layer} (original)",
                 "SAE feature (ranked by forget - retain)", "mean activation on the answer span")
    # the title at the top of the canvas, clear of the legend above the plot
    return fig.update_layout(title={"yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 12}}, margin={"t": 100})
