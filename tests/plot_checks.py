"""What a reader sees in a figure, asserted: a title, named axes, one legend entry per checkpoint, and the numbers
of the result's own table on the bars or lines (not just "a trace exists")."""

from __future__ import annotations

import math

import pandas as pd


def reads(fig, *, axes: bool = True) -> None:
    assert fig.layout.title.text, "untitled figure"
    if axes:
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text, "an axis without a title"


def legend_names(fig) -> list[str]:
    return [t.name for t in fig.data if t.name and t.showlegend is not False]


def one_trace_per_checkpoint(fig, checkpoints) -> None:
    """Every checkpoint has exactly one legend entry that starts with its name, and nothing else is in the legend."""
    names = legend_names(fig)
    for c in checkpoints:
        mine = [n for n in names if n == c or n.startswith(f"{c} ") or n.startswith(f"{c}:")]
        assert len(mine) == 1, (c, names)
    assert len(names) == len(set(checkpoints)), names


def bars_show(fig, frame: pd.DataFrame, x: str, y: str, label=str) -> None:
    """Each checkpoint's bar heights equal the table's values, category by category."""
    for t in fig.data:
        d = frame[frame.model == t.name]
        want = {label(k): v for k, v in zip(d[x], d[y], strict=True)}
        got = dict(zip(t.x, t.y, strict=True))
        assert set(got) == set(want), (t.name, got, want)
        for k, v in want.items():
            assert (math.isnan(v) and math.isnan(got[k])) or abs(got[k] - v) < 1e-9, (t.name, k, got[k], v)


def one_trace_per_checkpoint_of(fig, checkpoints, group: str) -> None:
    """Line plots with one trace per (checkpoint, group): "<checkpoint> (<group>)" exactly once each."""
    names = legend_names(fig)
    for c in checkpoints:
        assert names.count(f"{c} ({group})") == 1, (c, group, names)
