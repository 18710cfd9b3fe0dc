"""Figures of the prompt-variant probe: checkpoints side by side per variant, the retain-only model beside them (a
variant means "suppressed" only where it lifts a checkpoint clearly above what it lifts the deletion reference to),
and the multiple-choice reading against its chance level."""

from __future__ import annotations

import plotly.graph_objects as go

from unlearn_core.viz.charts import METRIC_LABEL, bar_chart

LABELS = {"plain": "plain question", "paraphrase": "paraphrased question", "few_shot": "few-shot retain context",
          "prime": "answer prefix", "best": "best per item"}


def plot_prompt_variants(result, metric: str = "forget_p") -> go.Figure:
    """Forget score (or recovery, or level excess) per variant, the plain question first; "best per item" is the
    evidence's attack."""
    df = result.to_frame()
    if metric.startswith("recovery") or metric == "level_excess":  # the original has no recovery of its own
        df = df[(df.attack != "plain") & (df.role != "original")]
    df = df.assign(attack=df.attack.map(lambda a: LABELS.get(a, a)))
    y = {"level_excess": "level excess over the control (share of the original's lead)"}.get(
        metric, METRIC_LABEL.get(metric, metric))
    fig = bar_chart(df, "attack", metric, f"Prompt variants: {metric.replace('_', ' ')} by prompt", "prompt", y)
    cats = list(dict.fromkeys(df.attack))  # two lines each: side by side they ran into each other on the page
    return fig.update_xaxes(tickmode="array", tickvals=cats,
                            ticktext=[c.replace(" ", "<br>", 1) if len(c) > 12 else c for c in cats])


def plot_multiple_choice(result) -> go.Figure:
    """Probability mass on the gold letter (normalised over the option letters), forget and holdout, with chance."""
    df = result.choice_frame()
    fig = bar_chart(df, "split", "gold_mass", "Multiple choice: mass on the gold option", "split",
                    "gold-letter probability (normalised over the options)")
    if not df.empty:
        chance = float(df.chance.mean())
        fig.add_hline(y=chance, line_dash="dot", annotation_text=f"chance {chance:.2f}",
                      annotation_position="top left")
    return fig
