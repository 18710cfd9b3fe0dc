"""Chart shapes every probe page shares: grouped bars and lines per checkpoint, in theme colours, with the
retain-only reference hatched, and category ids written as a reader says them."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go

from unlearn_core.viz.theme import apply_plotly, checkpoint_colors, checkpoint_order

METRIC_LABEL = {
    "forget_acc": "forget accuracy (share of answers reproduced)",
    "forget_p": "forget p~ (mean answer-token probability)",
    "recovery_acc": "recovery rate (accuracy, 0-1)",
    "recovery_p": "recovery rate (p~, 0-1)",
    "retain_acc_delta": "retain accuracy change",
}


def human_label(x) -> str:
    """Category ids as a reader says them: "sigma0.1" -> "noise σ = 0.1", "blocks [2]" -> "block 2"."""
    s = str(x)
    m = re.fullmatch(r"sigma_?([\d.eE-]+)", s)
    if m:
        return f"noise σ = {float(m[1]):g}"
    m = re.fullmatch(r"blocks? \[([\d, ]*)\]", s)
    if m:
        ids = [t.strip() for t in m[1].split(",") if t.strip()]
        return ("block " if len(ids) == 1 else "blocks ") + ", ".join(ids)
    m = re.fullmatch(r"(\d+)\s*bits?", s)
    if m:
        return f"{m[1]}-bit"
    return s


def bar_chart(df: pd.DataFrame, x: str, y: str, title: str, x_title: str, y_title: str) -> go.Figure:
    """Grouped bars: one trace per checkpoint (df.model), categories on x."""
    names = checkpoint_order(df.model.unique())
    colors = checkpoint_colors(names)
    fig = go.Figure()
    for n in names:
        d = df[df.model == n]
        fig.add_trace(go.Bar(x=[human_label(v) for v in d[x]], y=d[y], name=n, marker_color=colors[n],
                             marker_pattern_shape="/" if n == "retain_only" else "",  # the reference: always hatched
                             hovertemplate=f"{n}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", legend_title_text="checkpoint")
    return apply_plotly(fig, title, x_title, y_title)


def line_chart(df: pd.DataFrame, x: str, y: str, title: str, x_title: str, y_title: str,
               dash_by: str | None = None) -> go.Figure:
    names = checkpoint_order(df.model.unique())
    colors = checkpoint_colors(names)
    fig = go.Figure()
    groups = sorted(df[dash_by].unique()) if dash_by else [None]
    for gi, g in enumerate(groups):
        for n in names:
            d = df[(df.model == n) & ((df[dash_by] == g) if dash_by else True)].sort_values(x)
            if d.empty:
                continue
            label = n if g is None else f"{n} ({g})"
            fig.add_trace(go.Scatter(x=d[x], y=d[y], name=label, mode="lines+markers",
                                     line={"color": colors[n], "dash": ("solid", "dash", "dot")[gi % 3]}))
    fig.update_layout(legend_title_text="checkpoint")
    return apply_plotly(fig, title, x_title, y_title)


def reference_name(roles: dict[str, str]) -> str:
    """The retain-only reference's display name among {checkpoint: role} ("retain_only" when there is none)."""
    return next((n for n, r in roles.items() if r == "retain_only"), "retain_only")
