"""The headline figures of an audit: "looks forgotten" beside "still inside" per checkpoint, and the evidence matrix.

plot_restoration.plot_verdict prints each verdict above its bar, where long verdicts ("partially suppressed")
collide with the neighbouring group and with the reference line's label. Here the verdict goes under the checkpoint
name on the axis, the rule's thresholds are drawn as lines, and the retain-only model (what deletion looks like) is
hatched like on every other page.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from unlearn_core.viz.theme import (
    RETAIN_ONLY_COLOR,
    SEQUENTIAL_COLORS,
    apply_plotly,
    checkpoint_order,
)

BEHAVIOUR_COLOR = "#B0B0B0"
RETENTION_COLOR = "#332288"  # one colour for "still inside": the checkpoint is named on the axis
VERDICT_MARK = {"deleted": "deleted", "partially suppressed": "partially suppressed", "suppressed": "SUPPRESSED",
                "not forgotten": "not forgotten", "unknown": "unknown"}


def _rows(verdict) -> list:
    order = checkpoint_order([v.model for v in verdict.verdicts])
    by_name = {v.model: v for v in verdict.verdicts}
    return [by_name[n] for n in order]


def _nan0(x: float) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def plot_verdict_headline(verdict, title: str = "Looks forgotten vs still inside") -> go.Figure:
    """Per checkpoint: behavioural forgetting (1 - forget acc / original's) beside retention r (max evidence).

    Suppression reads as two tall bars (looks forgotten AND still inside); deletion as a tall grey bar beside a short
    coloured one, like the retain-only reference.
    """
    rows = _rows(verdict)
    names = [v.model for v in rows]
    ticks = [f"{v.model}<br><b>{VERDICT_MARK.get(v.verdict, v.verdict)}</b>" for v in rows]
    fig = go.Figure()
    fig.add_bar(x=ticks, y=[_nan0(v.looks_forgotten_score) for v in rows], name="looks forgotten (behaviour)",
                marker={"color": BEHAVIOUR_COLOR, "line": {"color": "#666666", "width": 1}},
                customdata=[[v.forget_acc, v.original_forget_acc] for v in rows],
                hovertemplate="1 - %{customdata[0]:.3f} / %{customdata[1]:.3f} = %{y:.3f}"
                              "<extra>looks forgotten</extra>")
    fig.add_bar(x=ticks, y=[_nan0(v.retention) for v in rows], name="still inside (max retention evidence)",
                marker={"color": [RETAIN_ONLY_COLOR if n == "retain_only" else RETENTION_COLOR for n in names],
                        "pattern": {"shape": ["/" if n == "retain_only" else "" for n in names],
                                    "fgcolor": "white", "solidity": 0.4}},
                text=["n/a" if math.isnan(v.retention) else f"{v.retention:.2f}" for v in rows],
                textposition="outside", cliponaxis=False,
                customdata=[v.retention_from or "no retention score" for v in rows],
                hovertemplate="r = %{y:.3f} from %{customdata}<extra>still inside</extra>")
    cfg = verdict.config
    lines = [(cfg.suppressed_at, f"suppressed<br>r >= {cfg.suppressed_at:g}", "#777777", "dash"),
             (cfg.partial_at, f"partially suppressed<br>r >= {cfg.partial_at:g}", "#777777", "dash")]
    ref = next((v for v in rows if v.model == "retain_only"), None)
    if ref is not None and not math.isnan(ref.retention):
        lines.append((ref.retention, f"retain-only r = {ref.retention:.2f}<br>(deletion reference)",
                      RETAIN_ONLY_COLOR, "dot"))
    for y, label, color, dash in lines:  # labels in the right margin: never on top of a bar
        fig.add_hline(y=y, line_dash=dash, line_color=color, line_width=1.5)
        fig.add_annotation(x=1.01, xref="paper", y=y, yref="y", text=label, showarrow=False, xanchor="left",
                           align="left", font={"size": 11, "color": color})
    fig.update_layout(barmode="group", bargap=0.3, bargroupgap=0.05, yaxis_range=[0, 1.12], height=440,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
                      margin={"t": 90, "b": 70, "r": 150})
    fig.update_xaxes(tickangle=0)
    fig.update_yaxes(tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0])
    return apply_plotly(fig, title, "checkpoint and verdict", "score (0 = none, 1 = all)")


def plot_evidence_matrix(verdict, labels: dict[str, str] | None = None,
                         title: str = "Retention evidence per checkpoint") -> go.Figure:
    """Heatmap checkpoint x retention score (each in [0, 1]); blank where an analysis has not been run."""
    rows = _rows(verdict)
    keys = [k for k in verdict.config.retention_keys if any(k in v.evidence for v in rows)]
    if not keys:
        keys = ["(no retention score yet)"]
    z = [[v.evidence.get(k, math.nan) for v in rows] for k in keys]
    text = [["" if math.isnan(x) else f"{x:.2f}" for x in r] for r in z]
    ylabels = [(labels or {}).get(k, k) for k in keys]
    scale = [[i / (len(SEQUENTIAL_COLORS) - 1), c] for i, c in enumerate(SEQUENTIAL_COLORS)]
    fig = go.Figure(go.Heatmap(
        z=z, x=[v.model for v in rows], y=ylabels, text=text, texttemplate="%{text}", zmin=0, zmax=1,
        colorscale=scale, colorbar={"title": {"text": "retention", "side": "right"}, "thickness": 12},
        hovertemplate="%{x} · %{y}: %{z:.3f}<extra></extra>", xgap=2, ygap=2,
    ))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False, tickangle=0)
    fig.update_layout(height=max(240, 130 + 44 * len(keys)))
    return apply_plotly(fig, title, "checkpoint", "retention score")


def plot_expert_activation(result, title: str | None = None) -> go.Figure:
    """Expert SAE features: mean activation on forget vs retain prompts in the original (why they were chosen)."""
    df = result.features_frame().sort_values("rank")
    labels = [f"#{int(f)}" for f in df["feature"]]
    fig = go.Figure()
    fig.add_bar(x=labels, y=df["mean_forget"], name="forget prompts", marker_color="#D55E00")
    fig.add_bar(x=labels, y=df["mean_retain"], name="retain prompts", marker_color="#0072B2")
    fig.update_layout(barmode="group", legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    fig.update_xaxes(type="category", tickangle=-45)
    return apply_plotly(fig, title or f"Expert SAE features, layer {result.layer} (original)",
                        "SAE feature (ranked by forget - retain)", "mean activation on the answer span")
