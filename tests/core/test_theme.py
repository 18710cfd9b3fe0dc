"""One visual language: stable, distinct, colour-blind-safe checkpoint colours and registered themes."""

from __future__ import annotations

import altair as alt
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from unlearn_core.viz import theme
from unlearn_core.viz.theme import (
    OKABE_ITO,
    ORIGINAL_COLOR,
    RETAIN_ONLY_COLOR,
    altair_color_scale,
    apply_plotly,
    checkpoint_colors,
    symmetric_range,
)

EIGHT = ["original", "retain_only", "npo", "ga", "rmu", "simnpo", "dpo", "idk"]


def test_eight_checkpoints_get_eight_distinct_okabe_ito_colours():
    colors = checkpoint_colors(EIGHT)
    assert set(colors) == set(EIGHT)
    assert len(set(colors.values())) == 8
    assert set(colors.values()) == set(OKABE_ITO.values())
    assert colors["original"] == ORIGINAL_COLOR and colors["retain_only"] == RETAIN_ONLY_COLOR


def test_colours_do_not_depend_on_order_or_page():
    a = checkpoint_colors(EIGHT)
    b = checkpoint_colors(list(reversed(EIGHT)))
    assert a == b
    # the same set of unlearned names on another page, without the references, keeps its colours
    c = checkpoint_colors(["rmu", "npo", "ga", "simnpo", "idk", "dpo"])
    assert all(c[n] == a[n] for n in c)
    # unlearned colours never collide with the references
    assert ORIGINAL_COLOR not in c.values() and RETAIN_ONLY_COLOR not in c.values()


def test_custom_reference_names_and_many_checkpoints():
    names = ["base", "ref"] + [f"u{i:02d}" for i in range(15)]
    colors = checkpoint_colors(names, original="base", retain_only="ref")
    assert colors["base"] == ORIGINAL_COLOR and colors["ref"] == RETAIN_ONLY_COLOR
    assert len(set(colors.values())) == 17  # 6 Okabe-Ito + 9 Tol muted before any repeat


def test_altair_scale_lists_references_first_and_last():
    scale = altair_color_scale(["npo", "retain_only", "ga", "original"]).to_dict()
    assert scale["domain"] == ["original", "ga", "npo", "retain_only"]
    assert scale["range"][0] == ORIGINAL_COLOR and scale["range"][-1] == RETAIN_ONLY_COLOR


def test_plotly_template_registered_and_applied():
    assert theme.THEME_NAME in pio.templates
    fig = apply_plotly(go.Figure(go.Bar(x=["a"], y=[1])), "Forget accuracy", "checkpoint", "accuracy")
    assert fig.layout.title.text == "Forget accuracy"
    assert fig.layout.xaxis.title.text == "checkpoint" and fig.layout.yaxis.title.text == "accuracy"
    tmpl = pio.templates[theme.THEME_NAME].layout
    assert tmpl.plot_bgcolor == "white" and tmpl.title.x == 0 and tmpl.xaxis.showline
    with pytest.raises(ValueError, match="y_title"):
        apply_plotly(go.Figure(), "t", "x", " ")


def test_altair_theme_enabled_and_in_chart_config():
    assert alt.theme.active == theme.THEME_NAME
    spec = alt.Chart({"values": [{"a": 1}]}).mark_point().encode(x="a:Q").to_dict()
    assert spec["config"]["title"]["anchor"] == "start"
    assert spec["config"]["range"]["category"][0] == ORIGINAL_COLOR


def test_continuous_scales():
    assert theme.DIVERGING_COLORS[len(theme.DIVERGING_COLORS) // 2] == "#F7F7F7"  # white at zero
    assert symmetric_range([-0.2, 0.5, float("nan")]) == (-0.5, 0.5)
    assert symmetric_range([0.0, 0.0]) == (-1.0, 1.0)  # identical checkpoints: no degenerate scale
    scale = theme.altair_diverging_scale(0.5).to_dict()
    assert scale["domain"] == [-0.5, 0.5] and scale["domainMid"] == 0
