"""Every chart of an audit at every size preset (one column, two columns, slide), measured in Chromium from the SVG:
no title, label or legend text outside the canvas, and no text under 7 pt at print size. The PDF is the print size
and embeds its fonts; the dashboard's own figure is left untouched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unlearn_core.viz.presets import PRESETS, PT_PER_IN, PX_PER_IN, paper_figure

pytestmark = [pytest.mark.lab, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "figures"  # git-ignored: PNGs to look at

MEASURE = """() => {
  const svg = document.querySelector('svg');
  const W = svg.width.baseVal.value, H = svg.height.baseVal.value;
  const r0 = svg.getBoundingClientRect();
  const out = [];
  for (const t of svg.querySelectorAll('text')) {
    const txt = t.textContent.trim();
    if (!txt) continue;
    const r = t.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    out.push({text: txt.slice(0, 60), x0: r.left - r0.left, y0: r.top - r0.top, x1: r.right - r0.left,
              y1: r.bottom - r0.top, fs: parseFloat(getComputedStyle(t).fontSize)});
  }
  return {W, H, texts: out};
}"""


@pytest.fixture(scope="module")
def gallery(tiny_lab):
    """Every chart the dashboard draws, from every analysis on four tiny-lab checkpoints (results cached on disk
    beside the test labs, so only the first run computes them)."""
    from tests.conftest import CACHE
    from unlearn_core.analyses.registry import ANALYSES
    from unlearn_core.report.gallery import chart_gallery
    from unlearn_core.run.audit import get_analysis, run_analysis, verdict_from_results
    from unlearn_core.run.workspace import lab_workspace
    from unlearn_core.store.results import ResultsStore

    spec = lab_workspace(tiny_lab, unlearned=["ga", "suppressed_head"], device="cpu")
    models, data = spec.load_models(), spec.load_data()
    store = ResultsStore(Path(CACHE) / "figure-gallery.sqlite")
    results = {n: run_analysis(get_analysis(n), models, data, store)[0] for n in ANALYSES}
    verdict, _ = verdict_from_results(list(results.items()), models)
    return chart_gallery(results, verdict)


def _measure(svgs: list[bytes]) -> list[dict]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        out = []
        for svg in svgs:
            page.set_content("<html><body style='margin:0'>" + svg.decode("utf-8") + "</body></html>")
            out.append(page.evaluate(MEASURE))
        browser.close()
    return out


def test_gallery_covers_every_analysis(gallery):
    from unlearn_core.analyses.registry import ANALYSES

    prefixes = {"scorecard": "scorecard", "keyword_recovery": "keyword", "concept_vectors": "concept",
                "sae_restoration": "sae"}
    for name in ANALYSES:
        assert any(k.startswith(prefixes.get(name, name)) for k in gallery), name
    assert {"verdict_headline", "verdict_evidence"} <= set(gallery) and len(gallery) >= 25


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_chart_fits_its_canvas_with_print_size_text(gallery, preset):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    from unlearn_core.report.export import figures_bytes

    p = PRESETS[preset]
    names = list(gallery)
    svgs = figures_bytes([(gallery[n], "svg") for n in names], preset=preset)
    problems = []
    for name, m in zip(names, _measure(svgs), strict=True):
        assert abs(m["W"] - p.width_px) <= 1, (name, m["W"])
        rows = (gallery[name].layout.meta or {}).get("rows") if isinstance(gallery[name].layout.meta, dict) else None
        # a row chart (the verdict headline) may grow taller for its row labels; every other chart is exact
        assert abs(m["H"] - p.height_px) <= 1 or (rows and m["H"] > p.height_px), (name, m["W"], m["H"])
        assert m["texts"], name
        pt_per_px = PT_PER_IN / PX_PER_IN  # the canvas is printed at its CSS size (W / 96 in ~ the preset width)
        for t in m["texts"]:
            if t["x0"] < -0.5 or t["y0"] < -0.5 or t["x1"] > m["W"] + 0.5 or t["y1"] > m["H"] + 0.5:
                problems.append(f"{name}: {t['text']!r} outside the canvas at {[round(t[k]) for k in 'x0 y0'.split()]}"
                                f"-{[round(t[k]) for k in 'x1 y1'.split()]} of {m['W']:.0f}x{m['H']:.0f}")
            if t["fs"] * pt_per_px < 7 - 1e-3:  # the SVG writes 9.33333 px for 7 pt
                problems.append(f"{name}: {t['text']!r} at {t['fs'] * pt_per_px:.1f} pt")
        if preset != "slide":  # paper: body text 7-9 pt at print size
            sizes = [t["fs"] * pt_per_px for t in m["texts"]]
            assert max(sizes) <= 9 + 1e-3, (name, max(sizes))
    assert not problems, "\n".join(problems[:20])
    out = ARTIFACTS / preset  # the same figures as PNG at print size, for a person to look at
    out.mkdir(parents=True, exist_ok=True)
    for name, png in zip(names, figures_bytes([(gallery[n], "png") for n in names], preset=preset), strict=True):
        (out / f"{name}.png").write_bytes(png)


def test_pdf_is_print_size_with_embedded_fonts_and_dashboard_figure_untouched(gallery):
    from unlearn_core.report.export import figure_bytes

    fig = gallery["verdict_headline"]
    before = fig.to_json()
    pdf = figure_bytes(fig, "pdf", preset="column")
    assert pdf.startswith(b"%PDF") and b"/FontFile" in pdf
    box = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert abs(float(box[1]) - PRESETS["column"].width_in * PT_PER_IN) < 1
    assert fig.to_json() == before  # the page keeps its screen layout
    paper = paper_figure(fig, "two_columns")
    assert paper.layout.width == PRESETS["two_columns"].width_px and fig.layout.width != paper.layout.width


def test_retain_only_is_hatched_in_every_bar_chart(gallery):
    """One encoding per checkpoint across every chart: the retain-only reference's bars are always hatched."""
    checked = 0
    for name, fig in gallery.items():
        for tr in fig.data:
            if tr.type != "bar":
                continue
            shape = tr.marker.pattern.shape
            if (tr.name or "").startswith("retain_only"):
                assert shape and (shape if isinstance(shape, str) else shape[0]) == "/", (name, tr.name)
                checked += 1
            elif isinstance(tr.marker.color, (list, tuple)) and tr.x is not None and "retain_only" in list(tr.x):
                i = list(tr.x).index("retain_only")
                assert shape is not None and not isinstance(shape, str) and shape[i] == "/", (name, tr.name)
                checked += 1
    assert checked >= 5
