"""Plots for prompt attribution and keyword-emphasis recovery (methods.md section 2.4).

The heatmap puts original / unlearned / difference rows on one word axis so a reader sees *where* the focus moved;
original and unlearned share one colour range (comparable), the difference gets its own symmetric range.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from unlearn_core.analyses.attribution import AttributionResult, ItemAttribution
from unlearn_core.analyses.keyword_emphasis import KeywordEmphasisResult
from unlearn_core.viz.theme import (
    DIVERGING_COLORS,
    RETAIN_ONLY_COLOR,
    apply_plotly,
    checkpoint_colors,
    checkpoint_order,
    symmetric_range,
)

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
            colorbar={"title": {"text": "Δ" if r == 3 else _METHOD_UNITS[method]}, "len": 0.3 if r == 3 else 0.6,
                      "y": 0.12 if r == 3 else 0.7},
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
    order = checkpoint_order(df.model.unique(), result.models[0], _retain_name(result))
    colors = checkpoint_colors(order, result.models[0], _retain_name(result))
    fig = go.Figure()
    for n in order:
        d = df[df.model == n]
        fig.add_trace(go.Box(y=d.key_share, name=n, marker_color=colors[n], boxpoints="all", jitter=0.4,
                             pointpos=0, customdata=d[["item"]], hovertemplate="item %{customdata[0]}: %{y:.3f}"))
    apply_plotly(fig, f"KeyShare per {split} prompt ({method.upper()})", "checkpoint",
                 "KeyShare (share of |C| on key tokens)")
    fig.update_layout(showlegend=False, yaxis_range=[-0.02, 1.02])
    return fig


def _retain_name(result) -> str:
    roles = result.roles if isinstance(result, AttributionResult) else dict(zip(result.summary.model,
                                                                                result.summary.role))
    return next((n for n, r in roles.items() if r == "retain_only"), "retain_only")


def plot_keyword_recovery(result: KeywordEmphasisResult, measure: str = "p") -> go.Figure:
    """Recovery per checkpoint (bars, retain-only model last as the deletion floor) with the retain side effect
    of the same emphasis beside it."""
    if measure not in ("p", "acc"):
        raise ValueError("measure must be 'p' or 'acc'")
    s = result.summary
    orig = s[s.role == "original"].model.iloc[0]
    ro = _retain_name(result)
    order = [n for n in checkpoint_order(s.model, orig, ro) if n != orig]
    s = s.set_index("model").loc[order]
    colors = checkpoint_colors(order, orig, ro)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["forget: recovery", "retain: side effect"],
                        horizontal_spacing=0.14)
    label = "p~" if measure == "p" else "accuracy"
    fig.add_trace(go.Bar(x=order, y=s[f"recovery_{measure}"], marker_color=[colors[n] for n in order],
                         marker_pattern_shape=["/" if n == ro else "" for n in order],  # the reference: hatched
                         text=[f"{v:.2f}" for v in s[f"recovery_{measure}"]], textposition="outside",
                         name="recovery", showlegend=False), row=1, col=1)
    fig.add_trace(go.Bar(x=order, y=s[f"retain_side_effect_{measure}"], name="retain side effect",
                         marker_color=[colors[n] for n in order], marker_pattern_shape=["/" if n == ro else ""
                                                                                       for n in order],
                         marker_line={"color": "#333333", "width": 1}, opacity=0.75, showlegend=False,
                         text=[f"{v:+.2f}" for v in s[f"retain_side_effect_{measure}"]], textposition="outside"),
                  row=1, col=2)
    if ro in s.index:
        fig.add_hline(y=float(s.loc[ro, f"recovery_{measure}"]), line_dash="dot", line_color=RETAIN_ONLY_COLOR,
                      annotation_text="retain-only", annotation_position="top left", row=1, col=1)
    apply_plotly(fig, f"Keyword-emphasis recovery ({label}, best of {len(result.config.variants)} variants)",
                 "checkpoint", f"recovery of {label} (0 = none, 1 = original)")
    fig.update_yaxes(title_text=f"Δ retain {label} under emphasis", row=1, col=2)
    fig.update_xaxes(title_text="checkpoint", row=1, col=2)
    fig.update_yaxes(range=[0, 1.1], row=1, col=1)
    return fig


def recovery_table(result: KeywordEmphasisResult) -> pd.DataFrame:
    """The numbers behind plot_keyword_recovery, retain-only value beside each checkpoint's."""
    s = result.summary.copy()
    ro = _retain_name(result)
    ref = s.set_index("model").loc[ro] if ro in set(s.model) else None
    for c in ("recovery_p", "recovery_acc", "retain_side_effect_p"):
        s[f"{c}_retain_only"] = float(ref[c]) if ref is not None else np.nan
    return s
