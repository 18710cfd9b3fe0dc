"""Exports: real SVG/PDF/PNG from plotly (kaleido + Chromium) and altair (vl-convert), tables, zip bundles."""

from __future__ import annotations

import io
import os
import zipfile

import altair as alt
import pandas as pd
import plotly.graph_objects as go
import pytest

from unlearn_core.report import export
from unlearn_core.report.export import bundle_zip, figure_bytes, safe_filename, table_csv, table_latex
from unlearn_core.viz.theme import apply_plotly

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _has_chrome() -> bool:
    return export.find_chrome() is not None


@pytest.fixture(scope="module")
def plotly_fig():
    fig = go.Figure(go.Bar(x=["original", "npo"], y=[0.9, 0.2]))
    return apply_plotly(fig, "Plotly forget accuracy", "checkpoint", "accuracy")


@pytest.fixture(scope="module")
def altair_chart():
    df = pd.DataFrame({"checkpoint": ["original", "npo"], "acc": [0.9, 0.2]})
    return alt.Chart(df, title="Altair forget accuracy").mark_bar().encode(x="checkpoint:N", y="acc:Q")


def _check(raw: bytes, fmt: str, title: str) -> None:
    if fmt == "svg":
        head = raw.lstrip()[:5]
        assert head.startswith(b"<svg") or head.startswith(b"<?xml")
        assert title.encode() in raw
    elif fmt == "pdf":
        assert raw.startswith(b"%PDF") and len(raw) > 1000
    else:
        assert raw.startswith(PNG_MAGIC)


@pytest.mark.parametrize("fmt", ["svg", "pdf", "png"])
def test_altair_export(altair_chart, fmt):
    _check(figure_bytes(altair_chart, fmt), fmt, "Altair forget accuracy")


@pytest.mark.skipif(not _has_chrome(), reason="no Chrome/Chromium: apt-get install chromium")
@pytest.mark.parametrize("fmt", ["svg", "pdf", "png"])
def test_plotly_export(plotly_fig, fmt):
    _check(figure_bytes(plotly_fig, fmt, width=600, height=400, scale=1), fmt, "Plotly forget accuracy")


@pytest.mark.skipif(not _has_chrome(), reason="no Chrome/Chromium: apt-get install chromium")
def test_many_figures_in_one_session_keep_order_and_formats(plotly_fig, altair_chart):
    from unlearn_core.report.export import figures_bytes

    second = go.Figure(plotly_fig).update_layout(title="Second plotly chart")
    jobs = [(plotly_fig, "svg"), (altair_chart, "png"), (second, "pdf"), (second, "svg"), (plotly_fig, "png")]
    out = figures_bytes(jobs, width=600, height=400, scale=1)
    _check(out[0], "svg", "Plotly forget accuracy")
    _check(out[1], "png", "")
    _check(out[2], "pdf", "")
    _check(out[3], "svg", "Second plotly chart")
    _check(out[4], "png", "")
    assert b"Plotly forget accuracy" not in out[3]  # each figure rendered on its own, in order
    assert figures_bytes([]) == []
    with pytest.raises(ValueError, match="unknown export format"):
        figures_bytes([(plotly_fig, "eps")])


def test_png_scale_and_size(altair_chart):
    import struct

    raw = figure_bytes(altair_chart, "png", width=300, height=200, scale=2)
    w, h = struct.unpack(">II", raw[16:24])  # IHDR width/height
    assert w >= 600 and h >= 400  # scale 2 doubles the 300x200 plot area (+ axes, title)


def test_unknown_format_and_type():
    with pytest.raises(ValueError, match="unknown export format 'eps'"):
        figure_bytes(go.Figure(), "eps")
    with pytest.raises(TypeError, match="plotly Figure or an altair Chart"):
        figure_bytes({"data": []}, "svg")


def test_missing_chrome_is_a_clear_error(monkeypatch, plotly_fig):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chrome")
    with pytest.raises(export.ExportError, match=r"apt-get install chromium"):
        figure_bytes(plotly_fig, "svg")


def test_find_chrome_sets_browser_path_for_debian_chromium(monkeypatch):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    found = export.find_chrome()
    if os.access(export.DEBIAN_CHROMIUM, os.X_OK):
        assert found == export.DEBIAN_CHROMIUM and os.environ["BROWSER_PATH"] == export.DEBIAN_CHROMIUM


def test_tables():
    df = pd.DataFrame({"checkpoint": ["npo_v2", "ga"], "forget_acc": [0.123456, 12.3456], "n": [10, 20]})
    csv = table_csv(df).decode()
    assert csv.splitlines()[0] == "checkpoint,forget_acc,n" and "0.123456" in csv  # full precision
    tex = table_latex(df, "Forget accuracy (50% of items)", "tab:forget").decode()
    assert r"\caption{Forget accuracy (50\% of items)}" in tex and r"\label{tab:forget}" in tex
    assert r"npo\_v2 & 0.123 & 10" in tex and "12.3 &" in tex and "0.123456" not in tex
    assert r"\toprule" in tex and r"\begin{tabular}{lrr}" in tex
    with pytest.raises(ValueError):
        table_latex(df, "c", "bad label with spaces")


def test_format_number():
    f = export.format_number
    assert [f(0.123456), f(12.3456), f(1234.5), f(0), f(7), f(float("nan"))] == [
        "0.123", "12.3", "1234", "0", "7", "--",
    ]  # fmt: skip
    assert f(1.2345e-5) == r"$1.23\times10^{-5}$"


def test_bundle_zip_contains_named_files():
    files = {"figures/forget.svg": b"<svg/>", "tables/forget.csv": b"a,b\n1,2\n", "README.txt": b"hi"}
    raw = bundle_zip(files)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        assert sorted(zf.namelist()) == sorted(files)
        assert all(zf.read(n) == data for n, data in files.items())
    assert bundle_zip(files) == raw  # reproducible
    for bad in ("../evil.txt", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="unsafe"):
            bundle_zip({bad: b"x"})


def test_safe_filename():
    assert safe_filename("Forget accuracy: NPO vs. original (λ=0.5)") == "forget_accuracy_npo_vs._original_0.5"
    assert safe_filename("a/b\\c") == "a_b_c"
    assert safe_filename("   ") == "figure"
    assert safe_filename("CON") == "_con"
    assert len(safe_filename("x" * 500)) == 80
