"""Figures of the relearning attack: checkpoints side by side in their theme colours, the retain-only model beside them
(a probe's number means "suppressed" only where it is clearly above what the deletion reference shows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from unlearn_core.viz.theme import apply_plotly, checkpoint_colors, checkpoint_order


def relearning_curve_stats(result, metric: str = "held_acc") -> pd.DataFrame:
    """Per checkpoint, the whole relearning curve in numbers: start, peak (and its step), last, and the area under
    the curve per step (the mean level over the run). The last step alone hides a reference that climbs mid-run."""
    c = result.curve_frame()
    rows = []
    for n in checkpoint_order(c.model.unique()):
        d = c[c.model == n].sort_values("step")
        x, y = d["step"].to_numpy(float), d[metric].to_numpy(float)
        if not len(y) or np.isnan(y).all():
            continue
        i = int(np.nanargmax(y))
        span = x[-1] - x[0]
        area = float(np.trapezoid(np.nan_to_num(y), x) / span) if span > 0 else float(y[0])
        rows.append({"model": n, "start": float(y[0]), "peak": float(y[i]), "peak_step": int(x[i]),
                     "last": float(y[-1]), "area_per_step": area})
    return pd.DataFrame(rows, columns=["model", "start", "peak", "peak_step", "last", "area_per_step"])


def plot_relearning(result, metric: str = "held_acc") -> go.Figure:
    """Held-out forget score at every fine-tuning step, the retain-only reference's curve dashed beside the others,
    each peak marked and named with the area in the legend."""
    c = result.curve_frame()
    label = {"held_acc": "held-out forget accuracy", "held_p": "held-out forget p~",
             "recovery_acc": "recovery rate (accuracy, 0-1)", "recovery_p": "recovery rate (p~, 0-1)"}
    names = checkpoint_order(c.model.unique())
    colors = checkpoint_colors(names)
    stats = relearning_curve_stats(result, metric).set_index("model")
    fig = go.Figure()
    for n in names:
        d = c[c.model == n].sort_values("step")
        st = stats.loc[n] if n in stats.index else None
        ref = n == "retain_only"
        name = n + (" (deletion reference)" if ref else "")
        if st is not None:
            name += f": peak {st['peak']:.2f} @ step {int(st['peak_step'])}, area {st['area_per_step']:.2f}"
        fig.add_trace(go.Scatter(x=d["step"], y=d[metric], name=name, mode="lines+markers",
                                 line={"color": colors[n], "dash": "dash" if ref else "solid",
                                       "width": 3 if ref else 2}, legendgroup=n))
        if st is not None:
            fig.add_trace(go.Scatter(x=[st["peak_step"]], y=[st["peak"]], mode="markers", showlegend=False,
                                     legendgroup=n, marker={"symbol": "star", "size": 12, "color": colors[n],
                                                            "line": {"color": "#000000", "width": 1}},
                                     hovertemplate=f"{n} peak %{{y:.3f}} at step %{{x}}<extra></extra>"))
    fig.update_layout(legend={"title": {"text": "checkpoint: peak, area under the curve per step"}})
    return apply_plotly(fig, "Relearning probe: held-out forget facts over the whole run",
                        "fine-tuning steps on the learn split", label.get(metric, metric))
