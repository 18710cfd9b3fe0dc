"""Plots for the robustness probes: one figure per probe, checkpoints side by side in their theme colours.

Every figure shows the retain-only model (green) next to the unlearned checkpoints: a probe's number only means
"suppressed" where it is clearly above what the deletion reference shows under the same attack.
"""

from __future__ import annotations

import re

import numpy as np
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


def _bars(df: pd.DataFrame, x: str, y: str, title: str, x_title: str, y_title: str) -> go.Figure:
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
                 f"Activation noise at {human_label(f'blocks {list(result.layers)}')}: best of "
                 f"K={result.config.k} samples",
                 "noise scale sigma (relative to ||h||; plain = no noise)", _METRIC_LABEL.get(metric, metric))


def plot_extraction(result) -> go.Figure:
    """Forget ROUGE-L recall: each model alone ("plain") vs guided decoding with the original."""
    df = result.to_frame()
    return _bars(df, "attack", "forget_rougeL", "Guided extraction: s = s_orig + w (s_orig - s_unl)",
                 "decoder (plain = model alone, w = guidance weight)", "forget ROUGE-L recall (0-1)")


def plot_update_revert(result, metric: str = "recovery_p") -> go.Figure:
    """Forget recovery as more of each matrix's update is undone (top-k singular directions, log2 axis), the
    retain-only reference dashed: a suppression edit gives its answers back at a rank where the reference gains
    little; the verdict reads the gap at the headline rank (dotted line)."""
    df = result.to_frame()
    df = df[df.attack != "plain"]
    names = checkpoint_order(df.model.unique())
    colors = checkpoint_colors(names)
    fig = go.Figure()
    for n in names:
        d = df[df.model == n].sort_values("rank")
        ref = n == "retain_only"
        fig.add_trace(go.Scatter(x=d["rank"], y=d[metric], mode="lines+markers",
                                 name=n + (" (deletion reference)" if ref else ""),
                                 line={"color": colors[n], "dash": "dash" if ref else "solid",
                                       "width": 3 if ref else 2},
                                 hovertemplate=f"{n}<br>top %{{x}} directions undone: %{{y:.3f}}<extra></extra>"))
    k = result.config.headline_rank
    top = max(1.0, float(np.nanmax(df[metric]))) if len(df) and df[metric].notna().any() else 1.0
    # a trace, not add_vline: on a log axis plotly places shapes at 10^x
    fig.add_trace(go.Scatter(x=[k, k], y=[0, top], mode="lines", name=f"verdict reads k = {k}",
                             line={"color": "#555555", "dash": "dot", "width": 1}, hoverinfo="skip"))
    ranks = sorted(df["rank"].unique())
    fig.update_xaxes(type="log", tickvals=ranks, ticktext=[str(int(r)) for r in ranks])
    fig.update_layout(legend_title_text="checkpoint")
    return apply_plotly(fig, "Update revert: recovery vs directions undone",
                        "directions undone per matrix (k, log scale)",
                        _METRIC_LABEL.get(metric, metric))


def plot_update_spectrum(result) -> go.Figure:
    """Per decoder block, the share of the update's squared norm in its top-k directions (headline k): an edit made
    of a few directions sits near 1, a retrained model's difference from the original is spread out."""
    s = result.spectrum_frame()
    k = result.config.headline_rank
    if s.empty:
        return apply_plotly(go.Figure(), "Update concentration (no weight changed)", "decoder block",
                            f"share of the update's energy in its top {k} directions")
    s = s.assign(e=s.energy_top_k * s.update_norm ** 2, n2=s.update_norm ** 2)
    agg = s.groupby(["model", "layer"], as_index=False)[["e", "n2"]].sum()
    agg["share"] = agg.e / agg.n2
    agg["block"] = agg.layer.map(lambda v: "other (embeddings, head)" if v < 0 else f"block {v}")
    return _bars(agg, "block", "share", f"Update concentration: energy in the top {k} directions",
                 "decoder block", f"share of ||W - W_orig||² in top {k} (0-1)")
