"""Plots for the robustness probes: one figure per probe, checkpoints side by side in their theme colours.

Every figure shows the retain-only model (green) next to the unlearned checkpoints: a probe's number only means
"suppressed" where it is clearly above what the deletion reference shows under the same attack.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from unlearn_core.viz.theme import apply_plotly, checkpoint_colors, checkpoint_order

_METRIC_LABEL = {
    "forget_acc": "forget accuracy (share of answers reproduced)",
    "forget_p": "forget p~ (mean answer-token probability)",
    "recovery_acc": "recovery rate (accuracy, 0-1)",
    "recovery_p": "recovery rate (p~, 0-1)",
    "retain_acc_delta": "retain accuracy change",
}


def _bars(df: pd.DataFrame, x: str, y: str, title: str, x_title: str, y_title: str) -> go.Figure:
    """Grouped bars: one trace per checkpoint (df.model), categories on x."""
    names = checkpoint_order(df.model.unique())
    colors = checkpoint_colors(names)
    fig = go.Figure()
    for n in names:
        d = df[df.model == n]
        fig.add_trace(go.Bar(x=d[x].astype(str), y=d[y], name=n, marker_color=colors[n],
                             hovertemplate=f"{n}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", legend_title_text="checkpoint")
    return apply_plotly(fig, title, x_title, y_title)


def _lines(df: pd.DataFrame, x: str, y: str, title: str, x_title: str, y_title: str,
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


def plot_quantization(result, metric: str = "forget_acc") -> go.Figure:
    """Forget score (or recovery) per bit width, unquantized ("plain") first; retain-only as the floor."""
    df = result.to_frame()
    if metric.startswith("recovery"):
        df = df[df.attack != "plain"]
    return _bars(df, "attack", metric, f"Quantization probe: {metric.replace('_', ' ')} by precision",
                 "weight precision (plain = unquantized)", _METRIC_LABEL.get(metric, metric))


def plot_bucket_changes(result) -> go.Figure:
    """Share of weights whose 4-bit bucket differs from the original's, per decoder block (-1 = outside blocks)."""
    b = result.buckets_frame()
    if b.empty:
        return apply_plotly(go.Figure(), "Weight bucket changes (no unlearned checkpoints)", "block", "share")
    b = b.assign(w=b.bucket_changed_share * b.n_weights)
    agg = b.groupby(["model", "layer"], as_index=False)[["w", "n_weights"]].sum()
    agg["share"] = agg.w / agg.n_weights
    agg["block"] = agg.layer.map(lambda v: "other (head, ...)" if v < 0 else f"block {v}")
    return _bars(agg, "block", "share",
                 f"Weights that change {result.config.bucket_bits}-bit bucket vs the original (original's scales)",
                 "decoder block", "share of weights in a different bucket")


def plot_relearning(result, metric: str = "held_acc") -> go.Figure:
    """Held-out forget score after each fine-tuning step on the learn split."""
    c = result.curve_frame()
    label = {"held_acc": "held-out forget accuracy", "held_p": "held-out forget p~",
             "recovery_acc": "recovery rate (accuracy, 0-1)", "recovery_p": "recovery rate (p~, 0-1)"}
    return _lines(c, "step", metric, "Relearning probe: held-out forget facts during fine-tuning",
                  "fine-tuning steps on the learn split", label.get(metric, metric))


def plot_cka(result) -> go.Figure:
    """CKA with the original per block, forget prompts solid and retain prompts dashed."""
    df = result.to_frame()
    fig = _lines(df, "layer", "cka", f"Linear CKA with the original per block ({result.config.pooling} features)",
                 "decoder block (output)", "linear CKA (1 = same representation)", dash_by="split")
    return fig


def plot_logit_lens(result, split: str = "forget", metric: str = "top1_share") -> go.Figure:
    lf = result.lens_frame()
    lf = lf[lf.split == split]
    label = {"top1_share": "share of items with the gold first token at rank 1",
             "mean_prob": "mean probability of the gold first token", "median_rank": "median rank of gold token"}
    return _lines(lf, "layer", metric, f"Logit lens on {split} prompts ({result.config.lens_head} head)",
                  "decoder block (output)", label.get(metric, metric))


def plot_perturbation(result, metric: str = "forget_acc") -> go.Figure:
    """Forget score under noise: best of K samples (any-correct accuracy / best p~), per noise scale."""
    df = result.to_frame()
    if metric.startswith("recovery"):
        df = df[df.attack != "plain"]
    return _bars(df, "attack", metric,
                 f"Activation noise at blocks {list(result.layers)}: best of K={result.config.k} samples",
                 "noise scale sigma (relative to ||h||; plain = no noise)", _METRIC_LABEL.get(metric, metric))


def plot_extraction(result) -> go.Figure:
    """Forget ROUGE-L recall: each model alone ("plain") vs guided decoding with the original."""
    df = result.to_frame()
    return _bars(df, "attack", "forget_rougeL", "Guided extraction: s = s_orig + w (s_orig - s_unl)",
                 "decoder (plain = model alone, w = guidance weight)", "forget ROUGE-L recall (0-1)")
