"""Training dynamics of checkpoint series: behaviour and the calibrated retention evidence over steps, one line per
series, with the verdict per step as a band underneath.

One figure, three rows on a shared step axis, so the step where a run starts to LOOK forgotten (top) can be read
against what the probes still find inside at that step (middle) and the verdict the rule gives it (bottom): retention
falling with behaviour reads as deletion, retention staying up as suppression.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from unlearn_core.viz.theme import OKABE_ITO, RETAIN_ONLY_COLOR, apply_plotly, checkpoint_colors

# one colour per verdict, the same on every series: deletion takes the reference's green (what deletion looks like)
VERDICT_COLORS = {"deleted": RETAIN_ONLY_COLOR, "partially suppressed": OKABE_ITO["orange"],
                  "suppressed": OKABE_ITO["vermillion"], "inconclusive": "#BBBBBB", "not forgotten": "#555555",
                  "unknown": "#E4E4E4", "nothing to audit": "#E4E4E4"}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _edges(steps: list[int]) -> list[tuple[float, float]]:
    """Each step's band cell: from halfway to the previous step to halfway to the next."""
    if len(steps) == 1:
        return [(steps[0] - 0.5, steps[0] + 0.5)]
    mids = [(a + b) / 2 for a, b in zip(steps, steps[1:], strict=False)]
    lo = [steps[0] - (mids[0] - steps[0])] + mids
    hi = mids + [steps[-1] + (steps[-1] - mids[-1])]
    return list(zip(lo, hi, strict=True))


def plot_dynamics(df: pd.DataFrame, suppressed_at: float = 0.15, partial_at: float = 0.1,
                  title: str = "Training dynamics: looks forgotten vs still inside") -> go.Figure:
    """df: unlearn_core.run.series' table (one row per series step)."""
    if df.empty:
        raise ValueError("plot_dynamics: no series steps to plot")
    names = list(dict.fromkeys(df["series"]))
    colors = checkpoint_colors(names, original="", retain_only="")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.09, row_heights=[0.4, 0.4, 0.2],
                        subplot_titles=("behaviour: forget (solid) and retain (dotted) accuracy",
                                        "still inside: excess recovery over its control, 95% CI",
                                        "verdict per step"))
    seen_verdicts: set[str] = set()
    for name in names:
        part = df[df["series"] == name].sort_values("step")
        steps, c = [int(s) for s in part["step"]], colors[name]
        fig.add_scatter(x=steps, y=part["forget_acc"], mode="lines+markers", name=f"{name}: forget acc",
                        line={"color": c, "width": 2}, legendgroup=name, row=1, col=1,
                        hovertemplate="step %{x}: forget acc %{y:.3f}<extra>" + name + "</extra>")
        fig.add_scatter(x=steps, y=part["retain_acc"], mode="lines+markers", name=f"{name}: retain acc",
                        line={"color": c, "width": 1.5, "dash": "dot"}, marker={"symbol": "circle-open"},
                        legendgroup=name, row=1, col=1,
                        hovertemplate="step %{x}: retain acc %{y:.3f}<extra>" + name + "</extra>")
        ok = part["retention"].notna()
        if ok.any():
            s = [int(x) for x in part.loc[ok, "step"]]
            lo, hi = list(part.loc[ok, "retention_lo"]), list(part.loc[ok, "retention_hi"])
            fig.add_scatter(x=s + s[::-1], y=hi + lo[::-1], mode="lines", fill="toself", fillcolor=_rgba(c, 0.18),
                            line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=name, row=2, col=1)
            fig.add_scatter(x=s, y=part.loc[ok, "retention"], mode="lines+markers", name=f"{name}: still inside",
                            line={"color": c, "width": 2}, legendgroup=name, row=2, col=1,
                            customdata=list(zip(lo, hi, part.loc[ok, "retention_from"], strict=True)),
                            hovertemplate="step %{x}: excess %{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                                          "<br>%{customdata[2]}<extra>" + name + "</extra>")
        first = part["first_looks_forgotten"].iloc[0]
        if not math.isnan(first):
            for row in (1, 2):
                fig.add_vline(x=first, line_dash="dash", line_color=c, line_width=1, row=row, col=1)
        for (a, b), verdict, st in zip(_edges(steps), part["verdict"], steps, strict=True):
            fig.add_bar(x=[b - a], base=[a], y=[name], orientation="h", width=0.8, name=verdict,
                        marker={"color": VERDICT_COLORS.get(verdict, "#E4E4E4"), "line": {"color": "white",
                                                                                          "width": 1}},
                        legendgroup=f"verdict {verdict}", showlegend=verdict not in seen_verdicts,
                        legendgrouptitle={"text": "verdict"} if not seen_verdicts else None,
                        hovertemplate=f"step {st}: {verdict}<extra>{name}</extra>", row=3, col=1)
            seen_verdicts.add(verdict)
    orig = df["original_forget_acc"].dropna()
    if len(orig):
        f0 = float(orig.iloc[0])
        fig.add_hline(y=f0, line_color="#000000", line_width=1, row=1, col=1)
        fig.add_hline(y=0.5 * f0, line_dash="dot", line_color="#777777", line_width=1, row=1, col=1,
                      annotation_text="looks forgotten below", annotation_position="bottom right",
                      annotation_font={"size": 10, "color": "#777777"})
    for yv, label in ((suppressed_at, f"suppressed: lo >= {suppressed_at:g}"),
                      (partial_at, f"partially: lo >= {partial_at:g}")):
        fig.add_hline(y=yv, line_dash="dash", line_color="#777777", line_width=1, row=2, col=1,
                      annotation_text=label, annotation_position="top left" if yv == suppressed_at else
                      "bottom left", annotation_font={"size": 10, "color": "#777777"})
    fig.add_hline(y=0, line_color="#333333", line_width=1, row=2, col=1)
    fig.update_layout(barmode="overlay", height=620 + 24 * len(names), legend={"groupclick": "toggleitem"},
                      margin={"t": 90})
    fig.update_yaxes(range=[-0.03, 1.03], title_text="accuracy", row=1, col=1)
    fig.update_yaxes(title_text="excess recovery", row=2, col=1)
    fig.update_yaxes(autorange="reversed", row=3, col=1)
    fig = apply_plotly(fig, title, "training step", "accuracy")
    fig.update_xaxes(title_text=None, row=1, col=1)  # one step axis title, under the band
    fig.update_xaxes(title_text="training step", row=3, col=1)
    return fig
