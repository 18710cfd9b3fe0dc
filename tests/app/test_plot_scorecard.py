"""Scorecard charts: titled, labelled axes, one colour per checkpoint from the shared theme, retain-only hatched."""

from __future__ import annotations

import math

import pandas as pd

from unlearn_core.analyses.scorecard import SUMMARY_COLUMNS
from unlearn_core.analyses.scorecard.plots import (
    SPLIT_METRICS,
    plot_mia_auc,
    plot_model_metric,
    plot_roc,
    plot_split_metric,
)
from unlearn_core.viz.theme import checkpoint_colors


def _summary() -> pd.DataFrame:
    rows = []
    for i, (name, role) in enumerate([("npo", "unlearned"), ("original", "original"), ("retain_only", "retain_only"),
                                      ("ga", "unlearned")]):
        row = {c: 0.1 * (i + 1) for c in SUMMARY_COLUMNS}
        row.update(model=name, role=role, forget_es=math.nan if name == "original" else 0.5, retain_p=math.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _check_axes(fig) -> None:
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_split_bars_order_colours_and_reference():
    summary = _summary()
    colors = checkpoint_colors(summary["model"].tolist())
    for metric in SPLIT_METRICS:
        fig = plot_split_metric(summary, metric)
        _check_axes(fig)
        assert [t.name for t in fig.data] == ["original", "ga", "npo", "retain_only"]
        for t in fig.data:
            if t.name == "retain_only":
                assert t.marker.pattern.shape == "/" and t.marker.pattern.fgcolor == colors["retain_only"]
            else:
                assert t.marker.color == colors[t.name]
    es = plot_split_metric(summary, "es")  # NaN is shown as n/a, not as a zero-height "perfect" bar
    assert es.data[0].name == "original" and es.data[0].y[0] is None and es.data[0].text[0] == "n/a"
    p = plot_split_metric(summary, "p")  # no retain values at all (no retain set): no empty retain group
    assert list(p.data[0].x) == ["forget set"] and "retain" not in p.layout.title.text


def test_other_scorecard_charts_are_labelled():
    summary = _summary()
    _check_axes(plot_model_metric(summary, "retain_ppl", "Retain perplexity", "perplexity", log_y=True))
    _check_axes(plot_mia_auc(summary))
    roc = pd.DataFrame({"model": ["original"] * 3 + ["ga"] * 3, "metric": "loss", "auc": [0.9] * 3 + [0.5] * 3,
                        "fpr": [0, 0.5, 1] * 2, "tpr": [0, 0.9, 1, 0, 0.5, 1]})
    fig = plot_roc(roc, "loss")
    _check_axes(fig)
    assert [t.name for t in fig.data] == ["chance", "original (AUC 0.90)", "ga (AUC 0.50)"]
