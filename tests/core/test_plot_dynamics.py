"""The training-dynamics figure: one behaviour and one retention line per series, a verdict band cell per step in
one colour per verdict, the rule's lines, and it exports."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from unlearn_core.report.plot_dynamics import VERDICT_COLORS, plot_dynamics
from unlearn_core.run.series import SERIES_COLUMNS


def _table():
    rows = []
    for name, ret in (("ga", [0.8, 0.6, 0.5]), ("npo", [0.7, 0.1, 0.02])):
        for step, f, r, v in zip((10, 20, 30), (0.9, 0.3, 0.1), ret,
                                 ("not forgotten", "suppressed", "partially suppressed") if name == "ga"
                                 else ("not forgotten", "inconclusive", "deleted"), strict=True):
            rows.append({"series": name, "step": step, "checkpoint": f"{name}@{step}", "forget_acc": f,
                         "retain_acc": 0.95, "original_forget_acc": 1.0, "behaviour": "", "retention": r,
                         "retention_lo": r - 0.05, "retention_hi": r + 0.05, "retention_from": "decodability",
                         "control": "retain-only reference", "verdict": v, "first_looks_forgotten": 20.0,
                         "reading": "", "from_store": True, "seconds": 0.0, "path": ""})
    return pd.DataFrame(rows, columns=SERIES_COLUMNS)


def test_one_line_per_series_and_a_verdict_band():
    fig = plot_dynamics(_table())
    names = [t.name for t in fig.data]
    assert names.count("ga: forget acc") == 1 and names.count("npo: forget acc") == 1
    assert names.count("ga: still inside") == 1 and names.count("npo: still inside") == 1
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 6  # one cell per step and series
    assert {b.marker.color for b in bars if b.name == "deleted"} == {VERDICT_COLORS["deleted"]}
    assert sum(1 for b in bars if b.showlegend) == len({b.name for b in bars})  # each verdict once in the legend
    # cells tile the step axis: 10 covers [5, 15], 20 [15, 25], 30 [25, 35]
    ga = [(b.base[0], b.base[0] + b.x[0]) for b in bars if b.y[0] == "ga"]
    assert ga == [(5, 15), (15, 25), (25, 35)]
    ga_line = next(t for t in fig.data if t.name == "ga: forget acc")
    npo_line = next(t for t in fig.data if t.name == "npo: forget acc")
    assert ga_line.line.color != npo_line.line.color
    bands = [t for t in fig.data if t.type == "scatter" and t.fill == "toself"]
    assert len(bands) == 2 and list(bands[0].y) == pytest.approx([0.85, 0.65, 0.55, 0.45, 0.55, 0.75])
    assert fig.layout.title.text.startswith("Training dynamics")


def test_steps_without_retention_evidence_draw_no_band_and_export():
    df = _table()
    df["retention"] = df["retention_lo"] = df["retention_hi"] = math.nan
    fig = plot_dynamics(df)
    assert not [t for t in fig.data if t.type == "scatter" and t.fill == "toself"]
    assert not [t for t in fig.data if (t.name or "").endswith("still inside")]
    from unlearn_core.report.export import figure_bytes

    assert figure_bytes(fig, "svg").lstrip().startswith(b"<svg")
    with pytest.raises(ValueError, match="no series steps"):
        plot_dynamics(df.iloc[0:0])
