"""The headline figures of an audit: "looks forgotten" beside "still inside" per checkpoint, the evidence matrix
and the probe-validity table.

The verdict goes under the checkpoint name on the axis (long verdicts above bars collide with neighbours), the
rule's thresholds are drawn as lines named in the legend, and the retain-only model (what deletion looks like) is
hatched like on every other page.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from unlearn_core.evidence.numbers import fmt_rule
from unlearn_core.viz.theme import RETAIN_ONLY_COLOR, SEQUENTIAL_COLORS, apply_plotly, checkpoint_order

BEHAVIOUR_COLOR = "#B0B0B0"
RETENTION_COLOR = "#332288"  # "still inside", recoverable axis: the checkpoint is named on the axis
EDIT_COLOR = "#CC6677"  # "still inside" read only by attacks that use the original: its own colour and hatch
VERDICT_MARK = {"deleted": "deleted", "partially suppressed": "partially suppressed", "suppressed": "SUPPRESSED",
                "hidden by a small edit": "hidden by a small edit", "inconclusive": "inconclusive",
                "not forgotten": "not forgotten", "unknown": "unknown", "nothing to audit": "nothing to audit"}
AXIS_WORDS = {"recoverable": "recoverable (checkpoint alone)", "edit_of_original": "edit of the original"}


def _rows(verdict) -> list:
    order = checkpoint_order([v.model for v in verdict.verdicts])
    by_name = {v.model: v for v in verdict.verdicts}
    return [by_name[n] for n in order]


def _nan0(x: float) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _bar_text(v, cfg) -> str:
    """The excess and its interval (the rule reads the lower bound), each printed on its true side of the lines."""
    if math.isnan(v.retention):
        return "excess n/a"
    lines = (cfg.suppressed_at, cfg.partial_at)
    axis = AXIS_WORDS.get(getattr(v, "deciding_axis", ""), "")
    return (f"{fmt_rule(v.retention, lines, signed=True)} [LB {fmt_rule(v.retention_lo, lines, signed=True)}, "
            f"{fmt_rule(v.retention_hi, lines, signed=True)}]" + (f" {axis}" if axis else ""))


def plot_verdict_headline(verdict, title: str = "Looks forgotten vs still inside") -> go.Figure:
    """Per checkpoint (one row each, any number of checkpoints): behavioural forgetting (1 - forget acc / original's)
    as a wide grey bar, and inside it the deciding evidence: the excess recovery over its control, with its bootstrap
    interval as an error bar.

    Suppression reads as a long grey bar holding a long dark one whose interval clears the dashed line; deletion as a
    long grey bar holding a short one whose interval stays left of it. Rows, not columns: checkpoint names and
    verdicts stay readable beside their bars at any count and width (columns overlapped from about 7 checkpoints).
    """
    rows = _rows(verdict)
    cfg = verdict.config
    ticks = [f"{v.model}<br><b>{VERDICT_MARK.get(v.verdict, v.verdict)}</b><br>{_bar_text(v, cfg)}" for v in rows]
    hatch = ["/" if v.model == verdict.reference or _is_retain_only(v.model) else "" for v in rows]
    fig = go.Figure()
    fig.add_bar(y=ticks, x=[_nan0(v.looks_forgotten_score) for v in rows], orientation="h", width=0.8,
                name="looks forgotten (behaviour)",
                marker={"color": BEHAVIOUR_COLOR, "line": {"color": "#666666", "width": 1},
                        "pattern": {"shape": hatch, "fgcolor": "#666666"}},
                customdata=[[v.forget_acc, v.original_forget_acc] for v in rows],
                hovertemplate="1 - %{customdata[0]:.3f} / %{customdata[1]:.3f} = %{x:.3f}"
                              "<extra>looks forgotten</extra>")
    # the deciding evidence, one trace per axis: recoverable (the checkpoint alone gives the answers back) in the
    # dark colour, edit-of-original (undoing a small edit needs the original) in its own colour and hatch
    for axis, color, name, shape in (
            ("recoverable", RETENTION_COLOR, f"recoverable excess (corrected LB, {cfg.ci:.0%} hi)", ""),
            ("edit_of_original", EDIT_COLOR, "only with the original (edit of the original)", "x")):
        sel = [getattr(v, "deciding_axis", "recoverable") == axis or (axis == "recoverable" and
                                                                       not getattr(v, "deciding_axis", ""))
               for v in rows]
        if not any(sel) and axis == "edit_of_original":
            continue
        legend_rows = 3 if axis == "edit_of_original" else 2
        x = [_nan0(v.retention) if s else 0.0 for v, s in zip(rows, sel, strict=True)]
        fig.add_bar(y=ticks, x=x, orientation="h", width=0.4, name=name,
                    marker={"color": color, "pattern": {"shape": [h or shape for h in hatch], "fgcolor": "#FFFFFF"}},
                    error_x={"type": "data", "symmetric": False, "color": "#000000", "thickness": 1.5, "width": 4,
                             "array": [_nan0(v.retention_hi) - xx if s else 0.0
                                       for v, xx, s in zip(rows, x, sel, strict=True)],
                             "arrayminus": [xx - _nan0(v.retention_lo) if s else 0.0
                                            for v, xx, s in zip(rows, x, sel, strict=True)]},
                    customdata=[[v.retention_from or "no counted evidence", v.control or "-", _nan0(v.retention_lo),
                                 _nan0(v.retention_hi)] for v in rows],
                    hovertemplate="excess %{x:.3f} [LB %{customdata[2]:.3f}, %{customdata[3]:.3f}]<br>"
                                  "%{customdata[0]} vs %{customdata[1]}<extra>still inside</extra>")
    # the rule's two lines, named in the legend (labels on the plot collided with bars and with each other)
    for xv, label, dash in ((cfg.suppressed_at, f"suppressed if LB >= {cfg.suppressed_at:g}", "dash"),
                            (cfg.partial_at, f"partially suppressed if LB >= {cfg.partial_at:g}", "dot")):
        fig.add_vline(x=xv, line_dash=dash, line_color="#555555", line_width=1.5)
        fig.add_scatter(x=[None], y=[None], mode="lines", name=label, hoverinfo="skip",
                        line={"dash": dash, "color": "#555555", "width": 1.5})
    fig.add_vline(x=0, line_color="#333333", line_width=1)
    lo = min([0.0] + [_nan0(v.retention_lo) for v in rows])
    # meta rows: a paper preset makes the canvas taller rather than squeeze three-line row labels together
    fig.update_layout(barmode="overlay", xaxis_range=[max(-1.0, lo - 0.05), 1.12], height=170 + 58 * len(rows),
                      meta={"rows": len(rows)},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
                      margin={"t": 60 + 30 * legend_rows, "b": 60, "r": 30})
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False)
    apply_plotly(fig, title, "share of the original's answer mass (1 = all)", "checkpoint and verdict")
    # the title at the top of the canvas, clear of the two-row legend above the plot
    return fig.update_layout(title={"yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 12}})


def _is_retain_only(name: str) -> bool:
    return name.replace("-", "_").lower().startswith("retain_only")


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


CONTROL_SHORT = {"uncalibrated (raw recovery)": "raw", "retain-only reference": "vs retain-only",
                 "holdout split": "vs holdout"}


def plot_probe_validity(validity, title: str = "Probe validity on the planted controls") -> go.Figure:
    """Per probe and control: the weakest suppressed control's lower bound vs the strongest deletion control's upper
    bound. A probe separates when the first sits above the second (and above the suppressed line).

    One row per probe and control (the probe named once, on its first row): a dozen probes under three controls
    are three dozen labels, which as columns overlapped at any width."""
    fig = go.Figure()
    keys, labels, last = [], [], None
    for r in validity.itertuples():
        probe = str(r.evidence).replace("_", " ")
        control = CONTROL_SHORT.get(r.control, r.control.split(" (")[0])
        keys.append(f"{r.evidence} · {r.control}")
        labels.append(f"{probe}: {control}" if probe != last else control)
        last = probe
    fig.add_bar(y=keys, x=validity["suppressed_worst"], orientation="h",
                name="suppressed controls (weakest lower bound)", marker_color="#D55E00")
    fig.add_bar(y=keys, x=validity["deletion_worst"], orientation="h",
                name="deletion controls (strongest upper bound)", marker_color=RETAIN_ONLY_COLOR,
                marker_pattern_shape="/")
    fig.update_layout(barmode="group", height=170 + 30 * len(keys), meta={"rows": len(keys)},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
                      margin={"t": 100})
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False, tickmode="array", tickvals=keys,
                     ticktext=labels)
    apply_plotly(fig, title, "recovery / excess (share of answer mass)", "probe and control")
    return fig.update_layout(title={"yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 12}})
