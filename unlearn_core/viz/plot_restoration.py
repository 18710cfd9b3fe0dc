"""Paper figures for restoration, patching and the verdict.

The headline chart puts "looks forgotten" (behaviour) beside "still inside" (retention evidence) per checkpoint,
with the retain-only model as the deletion reference: suppression shows as a tall first bar AND a tall second bar.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from unlearn_core.viz.theme import RETAIN_ONLY_COLOR, apply_plotly, checkpoint_colors, checkpoint_order

BEHAVIOUR_COLOR = "#999999"


def plot_verdict(verdict, title: str = "Looks forgotten vs still inside") -> go.Figure:
    """Per checkpoint: behavioural forgetting (1 - forget acc / original's) beside retention r, verdict labels."""
    df = verdict.to_frame()
    order = checkpoint_order(df["model"].tolist())
    df = df.set_index("model").loc[order].reset_index()
    colors = checkpoint_colors(order)
    fig = go.Figure()
    fig.add_bar(x=df["model"], y=df["looks_forgotten"], name="looks forgotten (behaviour)",
                marker_color=BEHAVIOUR_COLOR, hovertemplate="%{x}: %{y:.2f}<extra>looks forgotten</extra>")
    fig.add_bar(x=df["model"], y=df["retention"], name="still inside (max retention evidence)",
                marker_color=[colors[m] for m in df["model"]], text=df["verdict"], textposition="outside",
                customdata=df["retention_from"],
                hovertemplate="%{x}: r = %{y:.2f} from %{customdata}<extra>still inside</extra>")
    if "retain_only" in set(df["model"]):
        ref = float(df.loc[df["model"] == "retain_only", "retention"].iloc[0])
        fig.add_hline(y=ref, line_dash="dot", line_color=RETAIN_ONLY_COLOR,
                      annotation_text="retain-only (deletion reference)")
    fig.update_layout(barmode="group", yaxis_range=[0, 1.15])
    return apply_plotly(fig, title, "checkpoint", "score (0-1)")


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
        fig.add_scatter(x=sub["layer"], y=sub["sae_restoration"].fillna(0.0), mode="lines+markers", name=name,
                        legendgroup=name, line=dict(color=colors[name]))
        fig.add_scatter(x=sub["layer"], y=sub["sae_restoration_random"].fillna(0.0), mode="lines",
                        name=f"{name} (random features)", legendgroup=name, showlegend=False,
                        line=dict(color=colors[name], dash="dash", width=1))
    fig.update_xaxes(tickmode="linear", dtick=1)
    fig.update_yaxes(range=[0, 1.05])
    return apply_plotly(fig, title, "steered block output (layer index)", "restoration rate (0-1)")


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
