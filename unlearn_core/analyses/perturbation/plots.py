"""Figures of activation noise: checkpoints side by side in their theme colours, the retain-only model beside them
(a probe's number means "suppressed" only where it is clearly above what the deletion reference shows)."""

from __future__ import annotations

import plotly.graph_objects as go

from unlearn_core.viz.charts import METRIC_LABEL, bar_chart, human_label


def plot_perturbation(result, metric: str = "forget_acc") -> go.Figure:
    """Forget score under noise: best of K samples (any-correct accuracy / best p~), per noise scale."""
    df = result.to_frame()
    if metric.startswith("recovery"):
        df = df[df.attack != "plain"]
    return bar_chart(df, "attack", metric,
                     f"Activation noise at {human_label(f'blocks {list(result.layers)}')}: best of "
                 f"K={result.config.k} samples",
                 "noise scale sigma (relative to ||h||; plain = no noise)", METRIC_LABEL.get(metric, metric))
