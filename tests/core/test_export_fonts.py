"""Exported SVGs carry their font: one named family, measured by Chromium with that font, glyphs embedded for every
character the figure shows; the dashboard's own figure keeps the theme font."""

from __future__ import annotations

import base64
import io
import re

import pytest

from unlearn_core.report.export import figure_bytes, figures_bytes, find_chrome
from unlearn_core.viz.fonts import embed_fonts, family, text_in_svg

pytestmark = pytest.mark.skipif(find_chrome() is None, reason="plotly export needs Chromium")


def _figure():
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=["gradient ascent", "NPO", "retrained (µ=0.5)"], y=[0.1, 0.4, 0.05],
                           name="forget – accuracy"))
    fig.update_layout(title="<b>Forget accuracy</b> per checkpoint", xaxis_title="checkpoint",
                      yaxis_title="accuracy (fraction of 40 items)", showlegend=True)
    return fig


def _faces(svg: str) -> dict[str, bytes]:
    return {w: base64.b64decode(d) for w, d in
            re.findall(r"font-weight:(\d+);src:url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\)", svg)}


def test_svg_embeds_the_glyphs_of_every_character_it_shows():
    from fontTools.ttLib import TTFont

    fig = _figure()
    theme_family = fig.layout.font.family
    svg = figure_bytes(fig, "svg", preset="column").decode()
    name = family()
    families = set(re.findall(r"font-family:\s*([^;\"]+)", svg)) - {f"'{name}'"}
    assert families and all(f.strip().startswith(f"'{name}'") for f in families), families
    faces = _faces(svg)
    assert set(faces) == {"400", "700"}  # the bold title needs the bold face
    shown = set(text_in_svg(svg)) - {" ", "\n"}
    assert {"µ", "–"} <= shown
    for data in faces.values():
        font = TTFont(io.BytesIO(data))
        assert font.flavor == "woff"
        cmap = font.getBestCmap()
        assert not {c for c in shown if ord(c) not in cmap}  # a subset, but one that misses nothing
        assert len(cmap) < 120  # subset, not the 6000-glyph font
    assert len(svg) < 120_000
    assert fig.layout.font.family == theme_family  # the dashboard's figure is not changed by exporting it


def test_batch_export_embeds_too_and_other_formats_are_untouched():
    svg, pdf = figures_bytes([(_figure(), "svg"), (_figure(), "pdf")], preset="column")
    assert _faces(svg.decode()) and pdf.startswith(b"%PDF") and family().replace(" ", "").encode() in pdf


def test_embedding_is_idempotent_and_leaves_foreign_svgs_alone():
    plain = b'<svg xmlns="http://www.w3.org/2000/svg"><text style="font-family: Arial">x</text></svg>'
    assert embed_fonts(plain) == plain
    once = figure_bytes(_figure(), "svg")
    assert embed_fonts(once) == once
