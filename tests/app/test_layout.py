"""Chart grid of the analysis pages: two per row, a multi-panel figure gets the full width."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pages._shared.analysis_page import _is_wide, _rows


def test_wide_figures_get_their_own_row_and_keep_their_index():
    one, wide = go.Figure(), make_subplots(rows=1, cols=2)
    assert not _is_wide(one) and _is_wide(wide)
    rows = _rows([one, wide, one, one, one])
    assert [[i for i, _ in r] for r in rows] == [[0], [1], [2, 3], [4]]
    assert _rows([]) == []
