"""Figures of prompt attribution (methods.md section 2.4).

The heatmap puts original / unlearned / difference rows on one word axis so a reader sees *where* the focus moved;
original and unlearned share one colour range (comparable), the difference gets its own symmetric range.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from unlearn_core.analyses.attribution.result import AttributionResult, ItemAttribution
from unlearn_core.viz.charts import reference_name
from unlearn_core.viz.theme import DIVERGING_COLORS, apply_plotly, checkpoint_colors, checkpoint_order, symmetric_range

_METHOD_UNITS = {"loo": "ΔLP (nats/token)", "ig": "IG attribution (nats)"}


def _find_item(result: AttributionResult, item: int, split: str) -> ItemAttribution:
    for it in result.items:
        if it.item == item and it.split == split:
            return it
    raise KeyError(f"no {split} item {item} in this attribution result")


def _words(it: ItemAttribution, c: np.ndarray, level: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(labels, values, key flags) per word (sub-word contributions summed) or per token."""
    key = np.asarray(next(iter(it.keys.values()))) if it.keys else np.zeros(len(c), bool)
    if level == "token":
        return [t.replace("\n", "\\n") or "∅" for t in it.tokens], c, key
    n = len(it.words)
    vals, flags = np.zeros(n), np.zeros(n, bool)
    for t, w in enumerate(it.word_index):
        vals[w] += c[t]
        flags[w] |= key[t]
    return [w.replace("\n", "\\n") or "\\n" for w in it.words], vals, flags


def plot_token_heatmap(result: AttributionResult, item: int, model: str, split: str = "forget",
                       method: str = "loo", reference: str | None = None, level: str = "word") -> go.Figure:
    """Original (reference) / unlearned / difference contributions of one prompt, words on a shared axis.
    Key words (chosen under the original model) are underlined in the axis labels."""
    if method not in result.methods:
        raise ValueError(f"method {method!r} not in this result ({list(result.methods)})")
    reference = reference or result.models[0]
    it = _find_item(result, item, split)
    c_ref = it.contributions[method][reference]
    c_mod = it.contributions[method][model]
    labels, v_ref, key = _words(it, c_ref, level)
    _, v_mod, _ = _words(it, c_mod, level)
    v_diff = v_mod - v_ref
    ticks = [f"<u>{w}</u>" if k else w for w, k in zip(labels, key)]
    x = list(range(len(labels)))
    lim = symmetric_range(np.concatenate([v_ref, v_mod]))[1]
    dlim = symmetric_range(v_diff)[1]
    rows = [(reference, v_ref, lim), (model, v_mod, lim), (f"{model} − {reference}", v_diff, dlim)]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"{n} (LP {it.lp[n]:.2f})" if n in it.lp else n for n, _, _ in rows])
    for r, (name, vals, m) in enumerate(rows, start=1):
        fig.add_trace(go.Heatmap(
            z=[vals], x=x, y=[name], zmin=-m, zmax=m, zmid=0, colorscale=list(DIVERGING_COLORS),
            text=[[f"{v:+.3f}" for v in vals]], texttemplate="%{text}", customdata=[labels],
            hovertemplate="%{customdata}: %{z:.4f}<extra>" + name + "</extra>",
            # one bar for the two shared-range rows, one for the difference row, each beside its rows, apart
            colorbar={"title": {"text": "Δ" if r == 3 else _METHOD_UNITS[method], "side": "right"},
                      "len": 0.28 if r == 3 else 0.64, "y": 0.14 if r == 3 else 0.68, "nticks": 4 if r == 3 else 6},
            showscale=r >= 2), row=r, col=1)
    fig.update_xaxes(tickvals=x, ticktext=ticks, tickangle=-40, row=3, col=1)
    apply_plotly(fig, f"Per-word contribution to the target ({method.upper()}): {split} item {item}",
                 "prompt word (underlined = key word under the original model)", "model")
    fig.update_layout(height=460, xaxis_title=None)
    fig.update_xaxes(title_text="prompt word (underlined = key word under the original model)", row=3, col=1)
    return fig


def plot_key_share(result: AttributionResult, split: str = "forget", method: str = "loo") -> go.Figure:
    """KeyShare per prompt for every checkpoint: box + points (unlearning that breaks focus pulls it down)."""
    df = result.items_frame()
    df = df[(df.split == split) & (df.method == method)]
    order = checkpoint_order(df.model.unique(), result.models[0], reference_name(result.roles))
    colors = checkpoint_colors(order, result.models[0], reference_name(result.roles))
    fig = go.Figure()
    for n in order:
        d = df[df.model == n]
        fig.add_trace(go.Box(y=d.key_share, name=n, marker_color=colors[n], boxpoints="all", jitter=0.4,
                             pointpos=0, customdata=d[["item"]], hovertemplate="item %{customdata[0]}: %{y:.3f}"))
    apply_plotly(fig, f"KeyShare per {split} prompt ({method.upper()})", "checkpoint",
                 "KeyShare (share of |C| on key tokens)")
    fig.update_layout(showlegend=False, yaxis_range=[-0.02, 1.02])
    return fig
