"""Figures of the keyword-emphasis attack: forget scores per emphasis variant, beside the retain-only reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from unlearn_core.viz.charts import reference_name
from unlearn_core.viz.theme import RETAIN_ONLY_COLOR, apply_plotly, checkpoint_colors, checkpoint_order


def _roles(result) -> dict[str, str]:
    return dict(zip(result.summary.model, result.summary.role))


def plot_keyword_recovery(result, measure: str = "p") -> go.Figure:
    """Recovery per checkpoint (bars, retain-only model last as the deletion floor) with the retain side effect
    of the same emphasis beside it."""
    if measure not in ("p", "acc"):
        raise ValueError("measure must be 'p' or 'acc'")
    s = result.summary
    orig = s[s.role == "original"].model.iloc[0]
    ro = reference_name(_roles(result))
    order = [n for n in checkpoint_order(s.model, orig, ro) if n != orig]
    s = s.set_index("model").loc[order]
    colors = checkpoint_colors(order, orig, ro)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["forget: recovery", "retain: side effect"],
                        horizontal_spacing=0.14)
    label = "p~" if measure == "p" else "accuracy"
    fig.add_trace(go.Bar(x=order, y=s[f"recovery_{measure}"], marker_color=[colors[n] for n in order],
                         marker_pattern_shape=["/" if n == ro else "" for n in order],  # the reference: hatched
                         text=[f"{v:.2f}" for v in s[f"recovery_{measure}"]], textposition="outside",
                         name="recovery", showlegend=False), row=1, col=1)
    fig.add_trace(go.Bar(x=order, y=s[f"retain_side_effect_{measure}"], name="retain side effect",
                         marker_color=[colors[n] for n in order], marker_pattern_shape=["/" if n == ro else ""
                                                                                       for n in order],
                         marker_line={"color": "#333333", "width": 1}, opacity=0.75, showlegend=False,
                         text=[f"{v:+.2f}" for v in s[f"retain_side_effect_{measure}"]], textposition="outside"),
                  row=1, col=2)
    if ro in s.index:  # the deletion floor, named in the legend: a label on the line collided with the bars' numbers
        fig.add_hline(y=float(s.loc[ro, f"recovery_{measure}"]), line_dash="dot", line_color=RETAIN_ONLY_COLOR,
                      row=1, col=1)
        fig.add_scatter(x=[None], y=[None], mode="lines", name="retain-only level (deletion floor)",
                        hoverinfo="skip", line={"dash": "dot", "color": RETAIN_ONLY_COLOR}, row=1, col=1)
        # under the plot: above it sit the two panels' titles
        fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0}, margin={"b": 110})
    apply_plotly(fig, f"Keyword-emphasis recovery ({label}, best of {len(result.config.variants)} variants)",
                 "checkpoint", f"recovery of {label} (0 = none, 1 = original)")
    fig.update_yaxes(title_text=f"Δ retain {label} under emphasis", row=1, col=2)
    fig.update_xaxes(title_text="checkpoint", row=1, col=2)
    fig.update_yaxes(range=[0, 1.1], row=1, col=1)
    return fig


def recovery_table(result) -> pd.DataFrame:
    """The numbers behind plot_keyword_recovery, retain-only value beside each checkpoint's."""
    s = result.summary.copy()
    ro = reference_name(_roles(result))
    ref = s.set_index("model").loc[ro] if ro in set(s.model) else None
    for c in ("recovery_p", "recovery_acc", "retain_side_effect_p"):
        s[f"{c}_retain_only"] = float(ref[c]) if ref is not None else np.nan
    return s
