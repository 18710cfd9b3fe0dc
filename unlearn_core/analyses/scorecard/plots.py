"""Charts of the behavioural scorecard: every checkpoint side by side, in its own colour on every chart.

The retain-only model (never saw the forget set) is drawn hatched: it is the reference an unlearned checkpoint
should match on the forget split ("as if never trained on it"), not a competitor.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from unlearn_core.viz.theme import apply_plotly, checkpoint_colors, checkpoint_order

# summary column stem -> (chart label, axis title, bounded to [0, 1])
SPLIT_METRICS: dict[str, tuple[str, str, bool]] = {
    "acc": ("Answer accuracy", "exact-answer accuracy (fraction of items)", True),
    "p": ("Answer probability", "mean answer probability p̃ (0-1)", True),
    "rougeL": ("ROUGE-L recall of generated answers", "ROUGE-L recall (0-1)", True),
    "truth_ratio": ("Truth ratio", "forget: min(tr, 1/tr), 1 = cannot tell right from wrong<br>"
                    "retain: max(0, 1 - tr), higher = prefers the correct answer", False),
    "es": ("Extraction strength", "extraction strength (0-1)", True),
    "token_acc": ("Answer token accuracy", "teacher-forced token accuracy (0-1)", True),
}
MIA_LABELS = {"loss": "LOSS", "zlib": "zlib", "mink": "Min-K%", "minkpp": "Min-K%++"}
RETAIN_ONLY = "retain_only"


def _ordered(summary: pd.DataFrame) -> list[str]:
    return checkpoint_order(summary["model"].tolist())


def _marker(name: str, color: str) -> dict:
    marker: dict = {"color": color, "line": {"color": color, "width": 1}}
    if name == RETAIN_ONLY:  # the reference: hatched so it reads as "target", not "another method"
        marker.update(color="white", pattern={"shape": "/", "fgcolor": color, "solidity": 0.5})
    return marker


def _legend(fig: go.Figure) -> go.Figure:
    """Vertical checkpoint legend right of the plot (a horizontal one wraps into the title with 7+ checkpoints)."""
    fig.update_layout(legend={"title": {"text": "checkpoint"}, "tracegroupgap": 2})
    return fig


def splits_with_data(summary: pd.DataFrame, metric: str) -> list[str]:
    """Splits that have at least one finite value (an audit without a retain set has no retain bars to draw)."""
    out = []
    for split in ("forget", "retain"):
        col = f"{split}_{metric}"
        if col in summary.columns and pd.to_numeric(summary[col], errors="coerce").notna().any():
            out.append(split)
    return out


def _finite(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def plot_split_metric(summary: pd.DataFrame, metric: str) -> go.Figure:
    """Grouped bars: x = split (forget, retain), one bar per checkpoint. `summary` = ScorecardResult.to_frame()."""
    if metric not in SPLIT_METRICS:
        raise ValueError(f"unknown metric {metric!r}; one of {', '.join(SPLIT_METRICS)}")
    label, y_title, bounded = SPLIT_METRICS[metric]
    names = _ordered(summary)
    colors = checkpoint_colors(names)
    rows = summary.set_index("model")
    splits = splits_with_data(summary, metric) or ["forget"]
    fig = go.Figure()
    for name in names:
        ys = [_finite(rows.loc[name, f"{split}_{metric}"]) for split in splits]
        fig.add_bar(
            x=[f"{split} set" for split in splits], y=ys, name=name, marker=_marker(name, colors[name]),
            text=["n/a" if y is None else f"{y:.2f}" for y in ys], textposition="outside", cliponaxis=False,
            hovertemplate=f"<b>{name}</b><br>%{{x}}: %{{y:.3f}}<extra></extra>",
        )
    title = f"{label}: forget vs retain" if len(splits) == 2 else f"{label}: {splits[0]} set"
    apply_plotly(fig, title, "evaluation split", y_title)
    fig.update_layout(barmode="group", bargap=0.25, uniformtext_minsize=9, uniformtext_mode="hide")
    _legend(fig)
    if bounded:
        fig.update_yaxes(range=[0, 1.12])
    return fig


def plot_model_metric(summary: pd.DataFrame, column: str, title: str, y_title: str, log_y: bool = False,
                      reference: float | None = None, reference_label: str = "") -> go.Figure:
    """One bar per checkpoint for a per-model number (retain perplexity, forget quality)."""
    names = _ordered(summary)
    colors = checkpoint_colors(names)
    rows = summary.set_index("model")
    fig = go.Figure()
    for name in names:
        y = _finite(rows.loc[name, column])
        fig.add_bar(x=[name], y=[y], name=name, marker=_marker(name, colors[name]), showlegend=False,
                    text=["n/a" if y is None else f"{y:.3g}"], textposition="outside", cliponaxis=False,
                    hovertemplate=f"<b>{name}</b><br>{y_title}: %{{y:.4g}}<extra></extra>")
    apply_plotly(fig, title, "checkpoint", y_title)
    if log_y:
        fig.update_yaxes(type="log", dtick=1)
    if reference is not None:
        # a legend entry, not an annotation: plotly misplaces hline annotations on log axes
        fig.add_scatter(x=names, y=[reference] * len(names), mode="lines", name=reference_label,
                        line={"dash": "dash", "color": "#666666", "width": 1.5}, hoverinfo="skip")
        fig.update_layout(showlegend=True, legend={"orientation": "h", "yanchor": "bottom", "y": 1.0,
                                                   "xanchor": "right", "x": 1})
    return fig


def plot_mia_auc(summary: pd.DataFrame) -> go.Figure:
    """Membership-inference AUC (forget = members vs holdout = non-members) per attack, one bar per checkpoint."""
    names = _ordered(summary)
    colors = checkpoint_colors(names)
    rows = summary.set_index("model")
    metrics = [m for m in MIA_LABELS if f"mia_auc_{m}" in summary.columns]
    fig = go.Figure()
    for name in names:
        ys = [_finite(rows.loc[name, f"mia_auc_{m}"]) for m in metrics]
        fig.add_bar(x=[MIA_LABELS[m] for m in metrics], y=ys, name=name, marker=_marker(name, colors[name]),
                    hovertemplate=f"<b>{name}</b><br>%{{x}} AUC: %{{y:.3f}}<extra></extra>")
    apply_plotly(fig, "Membership inference: forget vs holdout", "attack (score)",
                 "ROC AUC (dashed 0.5 = chance)")
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(range=[0, 1.05])
    fig.add_hline(y=0.5, line={"dash": "dash", "color": "#666666", "width": 1.5})
    return _legend(fig)


def plot_roc(roc: pd.DataFrame, metric: str) -> go.Figure:
    """ROC curves of one MIA attack, one line per checkpoint. `roc` = ScorecardResult.roc_frame() (long format)."""
    sub = roc[roc["metric"] == metric]
    names = checkpoint_order(sub["model"].unique().tolist())
    colors = checkpoint_colors(names)
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#999999"},
                    hoverinfo="skip")
    for name in names:
        d = sub[sub["model"] == name]
        auc = _finite(d["auc"].iloc[0]) if len(d) else None
        fig.add_scatter(
            x=d["fpr"], y=d["tpr"], mode="lines", line={"color": colors[name], "width": 2.5,
                                                          "dash": "dash" if name == RETAIN_ONLY else "solid"},
            name=f"{name} (AUC {auc:.2f})" if auc is not None else name, line_shape="hv",
            hovertemplate=f"<b>{name}</b><br>FPR %{{x:.2f}}, TPR %{{y:.2f}}<extra></extra>",
        )
    label = MIA_LABELS.get(metric, metric)
    apply_plotly(fig, f"Membership inference ROC ({label})", "false positive rate (holdout flagged)",
                 "true positive rate (forget flagged)")
    fig.update_xaxes(range=[0, 1.01])
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(legend={"title": {"text": "checkpoint (AUC)"}})
    return fig
