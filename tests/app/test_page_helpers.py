"""Page helpers: the chart grid (two per row, a multi-panel figure gets the full width) and the page zip."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from views._shared.analysis_page import _is_wide, _rows


def test_wide_figures_get_their_own_row_and_keep_their_index():
    one, wide = go.Figure(), make_subplots(rows=1, cols=2)
    assert not _is_wide(one) and _is_wide(wide)
    rows = _rows([one, wide, one, one, one])
    assert [[i for i, _ in r] for r in rows] == [[0], [1], [2, 3], [4]]
    assert _rows([]) == []


def test_page_zip_holds_every_chart_in_every_format_and_every_table():
    import io
    import zipfile

    import pandas as pd
    import pytest

    from unlearn_core.report.export import find_chrome
    from views._shared.export import _bundle_bytes

    if find_chrome() is None:
        pytest.skip("no Chrome/Chromium: apt-get install chromium")
    items = {"Chart A": ("figure", go.Figure(go.Bar(y=[1, 2])).update_layout(title="Chart A"), ""),
             "Chart B": ("figure", go.Figure(go.Bar(y=[2, 1])).update_layout(title="Chart B"), ""),
             "Scores": ("table", pd.DataFrame({"model": ["ga"], "acc": [0.5]}), "Scores")}
    z = zipfile.ZipFile(io.BytesIO(_bundle_bytes(items, ("svg", "pdf", "png"))))
    names = set(z.namelist())
    assert names == {f"figures/chart_{c}.{f}" for c in "ab" for f in ("svg", "pdf", "png")} | {
        "tables/scores.csv", "tables/scores.tex"}
    assert b"Chart B" in z.read("figures/chart_b.svg") and b"Chart A" not in z.read("figures/chart_b.svg")
    assert z.read("figures/chart_a.pdf").startswith(b"%PDF")
    assert z.read("figures/chart_a.png").startswith(b"\x89PNG")
