"""Plots for the decodability probe: what a retain-trained linear probe reads from each checkpoint's own states.

The retain-only model (green) is the deletion reference and the holdout split the within-model control: a
checkpoint only shows "still decodable" where its forget line sits clearly above both.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from unlearn_core.viz.theme import apply_plotly, checkpoint_colors, checkpoint_order

LAYER_METRICS = {
    "forget_acc": "forget facts: probe accuracy (share of items, 0-1)",
    "forget_p": "forget facts: probe p of the answer's key token (0-1)",
    "forget_minus_holdout_acc": "forget minus holdout probe accuracy (share of items)",
    "holdout_acc": "holdout facts: probe accuracy (share of items, 0-1)",
    "holdout_p": "holdout facts: probe p of the answer's key token (0-1)",
    "retain_cv_acc": "retain facts: cross-validated probe accuracy (0-1)",
    "retain_cv_p": "retain facts: cross-validated probe p (0-1)",
}
_SUMMARY_BARS = {
    "forget_plain_p": "forget: own output",
    "forget_attacked_p": "forget: probe",
    "holdout_plain_p": "holdout: own output",
    "holdout_attacked_p": "holdout: probe",
}


def plot_decodability_layers(result, metric: str = "forget_acc") -> go.Figure:
    """One line per checkpoint over decoder blocks; the headline block of each checkpoint is a larger diamond."""
    if metric not in LAYER_METRICS:
        raise ValueError(f"metric must be one of {list(LAYER_METRICS)}, got {metric!r}")
    df = result.layers_frame()
    df = df.assign(forget_minus_holdout_acc=df.forget_acc - df.holdout_acc)
    names = checkpoint_order(df.model.unique(), original=result.original)
    colors = checkpoint_colors(names, original=result.original)
    fig = go.Figure()
    for n in names:
        d = df[df.model == n].sort_values("layer")
        fig.add_trace(go.Scatter(
            x=d.layer, y=d[metric], name=n, mode="lines+markers", line={"color": colors[n]},
            marker={"size": [14 if h else 7 for h in d.headline], "symbol": ["diamond" if h else "circle"
                                                                            for h in d.headline]},
            hovertemplate=f"{n}<br>block %{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(legend_title_text="checkpoint")
    fig.update_xaxes(tickmode="array", tickvals=sorted(df.layer.unique()))
    title = f"Retain-trained linear probe per block: {LAYER_METRICS[metric].split(':')[0].split(' (')[0]}"
    return apply_plotly(fig, title, "decoder block (output; diamond = headline block)", LAYER_METRICS[metric])


def plot_decodability_summary(result) -> go.Figure:
    """Mean key-token p: the model's own output vs the retain-trained probe at the headline block."""
    s = result.to_frame()
    long = s.melt(id_vars=["model"], value_vars=list(_SUMMARY_BARS), var_name="measure", value_name="p")
    long["measure"] = long.measure.map(_SUMMARY_BARS)
    names = checkpoint_order(long.model.unique(), original=result.original)
    colors = checkpoint_colors(names, original=result.original)
    fig = go.Figure()
    for n in names:
        d = long[long.model == n]
        fig.add_trace(go.Bar(x=d.measure, y=d.p, name=n, marker_color=colors[n],
                             marker_pattern_shape="/" if n == "retain_only" else "",  # the reference: hatched
                             hovertemplate=f"{n}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", legend_title_text="checkpoint")
    fig.update_xaxes(categoryorder="array", categoryarray=list(_SUMMARY_BARS.values()))
    return apply_plotly(fig, "Headline block: own output vs probe",
                        "split and readout", "mean p of the answer's key token (0-1)")


def layers_long(result) -> pd.DataFrame:
    """The per-block table in long form (model, layer, split, acc, p): for exports and custom charts."""
    df = result.layers_frame()
    parts = []
    for split in ("retain_cv", "forget", "holdout"):
        parts.append(df[["model", "layer", "headline"]].assign(split=split, acc=df[f"{split}_acc"],
                                                               p=df[f"{split}_p"]))
    return pd.concat(parts, ignore_index=True)
