"""The headline figures of an audit: "looks forgotten" beside "still inside" per checkpoint, and the evidence matrix.

plot_restoration.plot_verdict prints each verdict above its bar, where long verdicts ("partially suppressed")
collide with the neighbouring group and with the reference line's label. Here the verdict goes under the checkpoint
name on the axis, the rule's thresholds are drawn as lines, and the retain-only model (what deletion looks like) is
hatched like on every other page.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from unlearn_core.numbers import fmt_rule
from unlearn_core.viz.theme import (
    RETAIN_ONLY_COLOR,
    SEQUENTIAL_COLORS,
    apply_plotly,
    checkpoint_order,
)

BEHAVIOUR_COLOR = "#B0B0B0"
RETENTION_COLOR = "#332288"  # one colour for "still inside": the checkpoint is named on the axis
VERDICT_MARK = {"deleted": "deleted", "partially suppressed": "partially suppressed", "suppressed": "SUPPRESSED",
                "inconclusive": "inconclusive", "not forgotten": "not forgotten", "unknown": "unknown",
                "nothing to audit": "nothing to audit"}


def _rows(verdict) -> list:
    order = checkpoint_order([v.model for v in verdict.verdicts])
    by_name = {v.model: v for v in verdict.verdicts}
    return [by_name[n] for n in order]


def _nan0(x: float) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _bar_text(v, cfg) -> str:
    """The excess and the lower bound the rule reads, each printed on its true side of the lines."""
    if math.isnan(v.retention):
        return "n/a"
    lines = (cfg.suppressed_at, cfg.partial_at)
    return f"{fmt_rule(v.retention, lines)}<br>lo {fmt_rule(v.retention_lo, lines)}"


def plot_verdict_headline(verdict, title: str = "Looks forgotten vs still inside") -> go.Figure:
    """Per checkpoint: behavioural forgetting (1 - forget acc / original's) beside the deciding evidence: the excess
    recovery over its control, with its bootstrap interval as an error bar.

    Suppression reads as two tall bars (looks forgotten AND the interval clears the line); deletion as a tall grey
    bar beside a short one whose interval stays under the line.
    """
    rows = _rows(verdict)
    ticks = [f"{v.model}<br><b>{VERDICT_MARK.get(v.verdict, v.verdict)}</b>" for v in rows]
    fig = go.Figure()
    fig.add_bar(x=ticks, y=[_nan0(v.looks_forgotten_score) for v in rows], name="looks forgotten (behaviour)",
                marker={"color": BEHAVIOUR_COLOR, "line": {"color": "#666666", "width": 1}},
                customdata=[[v.forget_acc, v.original_forget_acc] for v in rows],
                hovertemplate="1 - %{customdata[0]:.3f} / %{customdata[1]:.3f} = %{y:.3f}"
                              "<extra>looks forgotten</extra>")
    y = [_nan0(v.retention) for v in rows]
    fig.add_bar(x=ticks, y=y, name=f"still inside (excess recovery over its control, {verdict.config.ci:.0%} CI)",
                marker={"color": RETENTION_COLOR},
                error_y={"type": "data", "symmetric": False, "color": "#000000", "thickness": 1.5, "width": 6,
                         "array": [_nan0(v.retention_hi) - yy for v, yy in zip(rows, y, strict=True)],
                         "arrayminus": [yy - _nan0(v.retention_lo) for v, yy in zip(rows, y, strict=True)]},
                text=[_bar_text(v, verdict.config) for v in rows],
                textposition="inside", insidetextanchor="end", textfont={"color": "white"},
                customdata=[[v.retention_from or "no counted evidence", v.control or "-", _nan0(v.retention_lo),
                             _nan0(v.retention_hi)] for v in rows],
                hovertemplate="excess %{y:.3f} [%{customdata[2]:.3f}, %{customdata[3]:.3f}]<br>%{customdata[0]} "
                              "vs %{customdata[1]}<extra>still inside</extra>")
    cfg = verdict.config
    # the two lines are close: the upper label sits above its line, the lower one below, so they never overlap
    for yv, label, anchor in ((cfg.suppressed_at, f"suppressed: lo >= {cfg.suppressed_at:g}", "bottom"),
                              (cfg.partial_at, f"partially: lo >= {cfg.partial_at:g}", "top")):
        fig.add_hline(y=yv, line_dash="dash", line_color="#777777", line_width=1.5)
        fig.add_annotation(x=1.01, xref="paper", y=yv, yref="y", text=label, showarrow=False, xanchor="left",
                           yanchor=anchor, align="left", font={"size": 11, "color": "#777777"})
    fig.add_hline(y=0, line_color="#333333", line_width=1)
    lo = min([0.0] + [_nan0(v.retention_lo) for v in rows])
    fig.update_layout(barmode="group", bargap=0.3, bargroupgap=0.05, yaxis_range=[max(-1.0, lo - 0.05), 1.12],
                      height=460, legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left",
                                          "x": 0}, margin={"t": 90, "b": 70, "r": 170})
    fig.update_xaxes(tickangle=0)
    return apply_plotly(fig, title, "checkpoint and verdict", "share of the original's answer mass (1 = all)")


def plot_evidence_matrix(verdict, labels: dict[str, str] | None = None,
                         title: str = "Excess recovery over the control, per probe and checkpoint") -> go.Figure:
    """Heatmap checkpoint x probe of the calibrated excess; the cell names the interval and the control, and says
    when a probe did not count (no control: 'needs reference'; excluded by the rule)."""
    rows = _rows(verdict)
    keys = sorted({e.key for v in rows for e in v.evidence})
    if not keys:
        keys = ["(no evidence yet)"]
    z, text = [], []
    for k in keys:
        zr, tr = [], []
        for v in rows:
            e = next((e for e in v.evidence if e.key == k), None)
            if e is None:
                zr.append(math.nan)
                tr.append("")
                continue
            zr.append(e.excess)
            if math.isnan(e.excess):
                tr.append(f"raw {e.raw:.2f}<br>needs reference" if not math.isnan(e.raw) else "n/a")
            else:
                mark = "" if k in v.counted else "<br>(not counted)"
                lines = (verdict.config.suppressed_at, verdict.config.partial_at)
                tr.append(f"{fmt_rule(e.excess, lines, signed=True)}<br>[{fmt_rule(e.lo, lines, signed=True)}, "
                          f"{fmt_rule(e.hi, lines, signed=True)}]{mark}")
        z.append(zr)
        text.append(tr)
    ylabels = [(labels or {}).get(k, k.replace("_", " ")) for k in keys]
    scale = [[i / (len(SEQUENTIAL_COLORS) - 1), c] for i, c in enumerate(SEQUENTIAL_COLORS)]
    fig = go.Figure(go.Heatmap(
        z=z, x=[v.model for v in rows], y=ylabels, text=text, texttemplate="%{text}", zmin=0, zmax=1,
        colorscale=scale, colorbar={"title": {"text": "excess", "side": "right"}, "thickness": 12},
        hovertemplate="%{x} · %{y}: %{z:.3f}<extra></extra>", xgap=2, ygap=2, textfont={"size": 11},
    ))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False, tickangle=-30 if len(rows) > 5 else 0)
    fig.update_layout(height=max(300, 170 + 64 * len(keys)), margin={"b": 110})
    return apply_plotly(fig, title, "checkpoint", "probe")


def plot_probe_validity(validity, title: str = "Probe validity on the planted controls") -> go.Figure:
    """Per probe and control: the weakest suppressed control's lower bound vs the strongest deletion control's upper
    bound. A probe separates when the first sits above the second (and above the suppressed line)."""
    fig = go.Figure()
    labels = [f"{r.evidence}<br>{r.control.split(' (')[0]}" for r in validity.itertuples()]
    fig.add_bar(x=labels, y=validity["suppressed_worst"], name="suppressed controls (weakest lower bound)",
                marker_color="#D55E00")
    fig.add_bar(x=labels, y=validity["deletion_worst"], name="deletion controls (strongest upper bound)",
                marker_color=RETAIN_ONLY_COLOR, marker_pattern_shape="/")
    fig.update_layout(barmode="group", height=500, margin={"b": 150},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    fig.update_xaxes(tickangle=-35, automargin=True)
    return apply_plotly(fig, title, "probe and control", "recovery / excess (share of answer mass)")


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
