"""Figures of the concept-vector audit: where the concept vectors are, how much each checkpoint moved them, what
zeroing them does, and how weight change is spread over layers. Figures only: nothing is shown or computed here.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from unlearn_core.analyses.concept_vectors.change import per_layer_change
from unlearn_core.viz.theme import ORIGINAL_COLOR, SEQUENTIAL_COLORS, apply_plotly, checkpoint_colors, checkpoint_order


def _names(result) -> list[str]:
    return list(result.model_hashes)


def _original(result) -> str:
    row = result.ablation[result.ablation["role"] == "original"]
    return str(row["checkpoint"].iloc[0]) if len(row) else "original"


def _retain_only(result) -> str:
    row = result.ablation[result.ablation["role"] == "retain_only"]
    return str(row["checkpoint"].iloc[0]) if len(row) else "retain_only"


def plot_vector_change(result, metric: str = "cosine") -> go.Figure:
    """Heatmap, (block, concept) rows x checkpoint columns: the median change of that concept's located vectors in
    that block (1 - cosine, rel. L2 or 1 - Jaccard). One row per vector (60+) squeezed the labels unreadable; the
    per-vector numbers stay in the table. Random columns of the same blocks are one extra row, the baseline."""
    labels = {"cosine": "1 - cosine", "rel_l2": "relative L2 change", "jaccard": "1 - top-k Jaccard"}
    if metric not in labels:
        raise ValueError(f"metric must be one of {sorted(labels)}")
    ch = result.change
    names = [n for n in checkpoint_order(_names(result), _original(result), _retain_only(result))
             if n in set(ch["checkpoint"])]
    con = ch[ch["kind"] == "concept"]
    value = (lambda s: 1 - s) if metric in ("cosine", "jaccard") else (lambda s: s)
    groups = sorted({(int(r.layer), r.concept) for r in con.itertuples()})
    rows, z = [], []
    for ly, c in groups:
        sel = con[(con["layer"] == ly) & (con["concept"] == c)]
        rows.append(f"block {ly} · {c} ({sel['neuron'].nunique()})")
        z.append([float(value(sel.loc[sel["checkpoint"] == n, metric]).median()) if (sel["checkpoint"] == n).any()
                  else math.nan for n in names])
    rnd = ch[ch["kind"] == "random"]
    rows.append("random columns (baseline)")
    z.append([float(value(rnd.loc[rnd["checkpoint"] == n, metric]).median()) if (rnd["checkpoint"] == n).any()
              else math.nan for n in names])
    fig = go.Figure(go.Heatmap(z=z, x=names, y=rows, colorscale=list(SEQUENTIAL_COLORS), zmin=0, xgap=1, ygap=1,
                               colorbar={"title": {"text": labels[metric], "side": "right"}, "thickness": 12},
                               hovertemplate="%{y}<br>%{x}: median %{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False)
    fig.update_layout(height=max(320, 140 + 26 * len(rows)))
    fig = apply_plotly(fig, f"Concept vectors: median change vs the original ({labels[metric]})",
                       "checkpoint", "block · concept (located vectors)")
    fig.update_layout(title={"xref": "container", "x": 0.01})  # the row labels push the plot right: title from the edge
    return fig


def plot_locate_scores(result, concept: str) -> go.Figure:
    """Layer x neuron scatter of every column's locate score for one concept; located columns ringed."""
    if concept not in result.concepts:
        raise ValueError(f"unknown concept {concept!r}")
    scores = result.loc_scores[result.concepts.index(concept)]  # [n_layers, d_mlp]
    ly, j = scores.nonzero()
    fig = go.Figure(go.Scatter(x=j, y=ly, mode="markers", name="column (score > 0)",
                               marker={"size": 4 + 6 * scores[ly, j] / max(1e-9, scores.max()),
                                       "color": scores[ly, j], "colorscale": list(SEQUENTIAL_COLORS),
                                       "colorbar": {"title": {"text": "reciprocal-rank score"}}},
                               hovertemplate="layer %{y}, neuron %{x}<br>score %{marker.color:.3f}<extra></extra>"))
    loc = result.located()
    loc = loc[loc["concept"] == concept]
    fig.add_trace(go.Scatter(x=loc["neuron"], y=loc["layer"], mode="markers", name="located",
                             marker={"size": 12, "color": "rgba(0,0,0,0)", "line": {"color": ORIGINAL_COLOR,
                                                                                   "width": 2}}))
    fig.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})  # not under the colour bar
    fig.update_yaxes(dtick=1)
    apply_plotly(fig, f"Where '{concept}' is written (vocabulary-projection score per MLP column)",
                 "neuron (column of the MLP output matrix)", "block")
    # the title at the top of the canvas, clear of the legend above the plot
    return fig.update_layout(title={"yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 12}}, margin={"t": 100})


def plot_vocab_projection(result, layer: int, neuron: int, checkpoints: list[str] | None = None) -> go.Figure:
    """Top tokens of one located vector under each checkpoint (bars side by side); concept tokens highlighted."""
    pr = result.projections
    pr = pr[(pr["layer"] == layer) & (pr["neuron"] == neuron)].drop_duplicates(["checkpoint", "rank"])
    if pr.empty:
        raise ValueError(f"layer {layer} neuron {neuron} is not a located vector")
    names = checkpoints or [n for n in checkpoint_order(_names(result), _original(result), _retain_only(result))
                            if n in set(pr["checkpoint"])]
    colors = checkpoint_colors(names, _original(result), _retain_only(result))
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.08)
    for c, name in enumerate(names, start=1):
        d = pr[pr["checkpoint"] == name].sort_values("rank")
        fig.add_trace(go.Bar(
            x=d["score"], y=[f"{r}. {t!r}" for r, t in zip(d["rank"] + 1, d["token"])], orientation="h", name=name,
            marker={"color": colors[name], "line": {"color": ["#000000" if b else colors[name]
                                                              for b in d["is_concept_token"]], "width": 2},
                    "opacity": [1.0 if b else 0.45 for b in d["is_concept_token"]],
                    "pattern": {"shape": "/" if name == _retain_only(result) else ""}},  # the reference: hatched
            hovertemplate="%{y}<br>logit-lens score %{x:.3f}<extra>" + name + "</extra>", showlegend=False),
            row=1, col=c)
        fig.update_yaxes(autorange="reversed", row=1, col=c)
        fig.update_xaxes(title_text="logit-lens score (logit units)", row=1, col=c)
    fig.update_layout(height=max(360, 90 + 22 * int(pr["rank"].max() + 1)), width=max(600, 300 * len(names)))
    return apply_plotly(fig, f"Vocabulary projection of layer {layer}, neuron {neuron} (solid = concept token)",
                        "logit-lens score (logit units)", "top tokens (rank. token)")


def plot_ablation(result) -> go.Figure:
    """Forget vs retain accuracy: every checkpoint as is, and the original with its located vectors zeroed."""
    ab = result.ablation
    names = [n for n in ab["checkpoint"] if n in set(_names(result))]
    colors = checkpoint_colors(names, _original(result), _retain_only(result))
    fig = go.Figure()
    oracle_symbols = iter(("diamond-open", "square-open", "triangle-up-open", "cross-open", "star-open"))
    for r in ab.itertuples():
        oracle = r.role == "oracle"
        symbol = next(oracle_symbols, "x-open") if oracle else "circle"  # every ablation its own marker
        fig.add_trace(go.Scatter(
            x=[r.retain_acc], y=[r.forget_acc], mode="markers", name=r.checkpoint,
            marker={"size": 14, "symbol": symbol,
                    "color": ORIGINAL_COLOR if oracle else colors[r.checkpoint], "line": {"width": 2}},
            hovertemplate=(f"{r.checkpoint}<br>retain acc %{{x:.3f}}<br>forget acc %{{y:.3f}}"
                           f"<br>median cosine of located vectors: {r.median_cos_located:.4f}<extra></extra>")))
    fig.update_xaxes(range=[-0.05, 1.1])
    fig.update_yaxes(range=[-0.05, 1.1])
    return apply_plotly(fig, "Ablation oracle: zeroing the located vectors vs what each checkpoint did",
                        "retain accuracy (share of exact answers)", "forget accuracy (share of exact answers)")


def plot_layer_weight_change(result, log_y: bool = True) -> go.Figure:
    """||dW|| / ||W|| per layer (all weight matrices of the layer pooled), one line per checkpoint."""
    df = per_layer_change(result.weight_change)
    names = [n for n in checkpoint_order(df["checkpoint"].unique(), _original(result), _retain_only(result))]
    colors = checkpoint_colors(names, _original(result), _retain_only(result))
    n_layers = result.loc_scores.shape[1]
    ticks = {-1: "embed", n_layers: "head"}
    fig = go.Figure()
    for name in names:
        d = df[df["checkpoint"] == name].sort_values("layer")
        y = d["rel_change"].where(d["rel_change"] > 0) if log_y else d["rel_change"]  # log axis: 0 = no point
        fig.add_trace(go.Scatter(x=d["layer"], y=y, mode="lines+markers", name=name,
                                 line={"color": colors[name]}, marker={"color": colors[name]},
                                 hovertemplate=name + "<br>layer %{x}<br>||dW||/||W|| %{y:.2e}<extra></extra>"))
    vals = list(range(-1, n_layers + 1))
    fig.update_xaxes(tickvals=vals, ticktext=[ticks.get(v, str(v)) for v in vals])
    if log_y:  # 1, 2 and 5 per decade: every digit of a decade ran into its neighbours
        fig.update_yaxes(type="log", dtick="D2")
    return apply_plotly(fig, "Relative weight change per layer (unchanged layers are omitted on the log scale)",
                        "layer", "||W1 - W0||_F / ||W0||_F")
