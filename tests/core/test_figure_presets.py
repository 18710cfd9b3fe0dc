"""Every chart of an audit at the dashboard's size and at every size preset (one column, two columns, slide),
measured in Chromium from the SVG: no title, label or legend text outside the canvas, no text over other text
(heatmap cell numbers included; rotated labels by their rotated boxes), every axis title whole on the canvas, no
colour bar over another or over a plot, no tick label wrapped to one or two characters a line, and no text under
7 pt at print size. The PDF is the print size and embeds its fonts; the dashboard's own figure is left untouched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unlearn_core.viz.presets import PRESETS, PT_PER_IN, PX_PER_IN, paper_figure

pytestmark = [pytest.mark.lab, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "figures"  # git-ignored: PNGs to look at
SIZES = ["screen", *PRESETS]  # screen: the figure as the dashboard draws it (900 px wide unless it sets its own)

MEASURE = """() => {
  const svg = document.querySelector('svg');
  const W = svg.width.baseVal.value, H = svg.height.baseVal.value;
  const r0 = svg.getBoundingClientRect();
  const box = (e) => { const r = e.getBoundingClientRect();
                       return [r.left - r0.left, r.top - r0.top, r.right - r0.left, r.bottom - r0.top]; };
  const out = [];
  for (const t of svg.querySelectorAll('text')) {
    const txt = t.textContent.trim();
    if (!txt) continue;
    const r = t.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    // the text's own box through its transform: a rotated label is a rotated rectangle, not its axis-aligned hull
    const b = t.getBBox(), s = svg.getScreenCTM().inverse().multiply(t.getScreenCTM());
    const corners = [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
      .map(([x, y]) => [s.a * x + s.c * y + s.e, s.b * x + s.d * y + s.f]);
    const lines = [...t.querySelectorAll('tspan.line')].map(l => l.textContent.trim()).filter(l => l);
    const g = t.parentElement, gg = g && g.parentElement;
    out.push({text: txt.slice(0, 60), x0: r.left - r0.left, y0: r.top - r0.top, x1: r.right - r0.left,
              y1: r.bottom - r0.top, fs: parseFloat(getComputedStyle(t).fontSize), corners,
              lines: lines.length ? lines : [txt], cls: t.getAttribute('class') || '',
              group: [g && g.getAttribute('class'), gg && gg.getAttribute('class')].filter(c => c).join(' ')});
  }
  const plots = [];
  for (const p of svg.querySelectorAll('g.plot[clip-path]')) {
    const id = p.getAttribute('clip-path').match(/#([^')"]+)/)[1];
    const rect = svg.querySelector('#' + CSS.escape(id) + ' rect');
    if (!rect) continue;
    const m = p.getCTM();
    plots.push([m.e, m.f, m.e + rect.width.baseVal.value, m.f + rect.height.baseVal.value]);
  }
  // a colour bar: its gradient and ticks (its box), each separately from the others and from every plot area
  const colorbars = [...svg.querySelectorAll('g.colorbar')].map(box).filter(b => b[2] > b[0]);
  return {W, H, texts: out, plots, colorbars};
}"""


@pytest.fixture(scope="module")
def gallery(tiny_lab):
    """Every chart the dashboard draws, from every analysis on four tiny-lab checkpoints (results cached on disk
    beside the test labs, so only the first run computes them), and the probe-validity chart (ga standing in as
    the deletion control: the chart's shape, not its truth, is under test here)."""
    from tests.conftest import CACHE
    from unlearn_core.analyses.registry import ANALYSES, collect_evidence_items
    from unlearn_core.evidence.validity import probe_validity
    from unlearn_core.report.gallery import chart_gallery
    from unlearn_core.run.audit import data_units, get_analysis, resolve_rule, run_analysis, verdict_from_results
    from unlearn_core.run.workspace import lab_workspace
    from unlearn_core.store.results import ResultsStore

    spec = lab_workspace(tiny_lab, unlearned=["ga", "suppressed_head"], device="cpu")
    models, data = spec.load_models(), spec.load_data()
    store = ResultsStore(Path(CACHE) / "figure-gallery.sqlite")
    results = {n: run_analysis(get_analysis(n), models, data, store)[0] for n in ANALYSES}
    verdict, _ = verdict_from_results(list(results.items()), models)
    truth = {"suppressed_head": "suppressed", "ga": "deleted"}
    validity = probe_validity(collect_evidence_items(results.items()), truth, "original",
                              verdict.reference, resolve_rule(verdict.config), data_units(data))
    return chart_gallery(results, verdict, validity)


def _measure(svgs: list[bytes], pngs: list[Path] | None = None) -> list[dict]:
    """Each SVG measured in one page of one browser; with `pngs`, each is also saved there as a 2x PNG (the SVG
    carries its fonts: the picture is what was measured)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page(device_scale_factor=2 if pngs else 1)
        out = []
        for i, svg in enumerate(svgs):
            page.set_content("<html><body style='margin:0'>" + svg.decode("utf-8") + "</body></html>")
            out.append(page.evaluate(MEASURE))
            if pngs:
                pngs[i].parent.mkdir(parents=True, exist_ok=True)
                page.locator("svg").first.screenshot(path=str(pngs[i]))
        browser.close()
    return out


def _axis_overlap(a: list, b: list) -> float:
    """How far two convex quadrilaterals (corner lists) overlap: the least penetration over the separating axes of
    both (0 or less: apart). Axis-aligned boxes give the overlap of their narrower side."""
    import math

    depth = math.inf
    for poly in (a, b):
        for i in range(4):
            (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % 4]
            n = math.hypot(x1 - x0, y1 - y0)
            if n < 1e-9:
                continue
            ax, ay = -(y1 - y0) / n, (x1 - x0) / n
            pa = [ax * x + ay * y for x, y in a]
            pb = [ax * x + ay * y for x, y in b]
            depth = min(depth, min(max(pa), max(pb)) - max(min(pa), min(pb)))
    return depth


def _box_overlap(a: list, b: list) -> float:
    return min(min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1]))


def _level(t: dict) -> bool:
    """Unrotated text (its box's top edge horizontal)."""
    (x0, y0), (x1, y1) = t["corners"][:2]
    return abs(y1 - y0) < 0.5 and x1 > x0


def _tick_label(t: dict) -> bool:
    return bool(re.search(r"\b[xy]\d*tick\b|cb\w*tick", t["group"]))


def layout_problems(name: str, m: dict, tolerance: float = 1.0) -> list[str]:
    """Everything a reader would see as broken in one measured chart (see the module's doc)."""
    out = []
    texts, W, H = m["texts"], m["W"], m["H"]
    for t in texts:
        where = f"{[round(t[k]) for k in ('x0', 'y0')]}-{[round(t[k]) for k in ('x1', 'y1')]} of {W:.0f}x{H:.0f}"
        if t["x0"] < -0.5 or t["y0"] < -0.5 or t["x1"] > W + 0.5 or t["y1"] > H + 0.5:
            title = re.fullmatch(r"[xy]\d*title", t["cls"])
            out.append(f"{name}: {'axis title ' if title else ''}{t['text']!r} outside the canvas at {where}")
        # a label's first line is its name ("ga"); a later line of one or two characters is a wrap's leftover
        if _tick_label(t) and any(len(line) <= 2 for line in t["lines"][1:]):
            out.append(f"{name}: tick label {t['text']!r} wrapped to {t['lines']}")
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            d = _axis_overlap(a["corners"], b["corners"])
            if d > tolerance:
                out.append(f"{name}: {a['text']!r} overlaps {b['text']!r} by {d:.1f} px")
            elif (a["group"] == b["group"] and re.search(r"\bx\d*tick\b", a["group"]) and d > -0.5 * a["fs"]
                  and _level(a) and _level(b) and re.search(r"[A-Za-z]", a["text"] + b["text"])):
                # neighbouring category labels closer than half an em read as one ("suppressed_head retain_only")
                out.append(f"{name}: tick labels {a['text']!r} and {b['text']!r} only {-d:.1f} px apart")
    for i, a in enumerate(m["colorbars"]):
        for b in m["colorbars"][i + 1:]:
            if _box_overlap(a, b) > tolerance:
                out.append(f"{name}: colour bars {i + 1} and {m['colorbars'].index(b) + 1} overlap "
                           f"by {_box_overlap(a, b):.0f} px")
        for p in m["plots"]:
            if _box_overlap(a, p) > tolerance:
                out.append(f"{name}: colour bar {i + 1} over a plot area by {_box_overlap(a, p):.0f} px")
    return out


@pytest.fixture(scope="module")
def measured(gallery):
    """size -> chart name -> measurement: every chart's SVG at the dashboard's size and at each preset, rendered by
    one kaleido session per size and measured in one browser page; the PNGs of the same SVGs are written under
    artifacts/figures/<size>/ for a person to look at."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    from unlearn_core.report.export import figures_bytes

    names = list(gallery)
    svgs, pngs = [], []
    for size in SIZES:
        svgs += figures_bytes([(gallery[n], "svg") for n in names], preset=None if size == "screen" else size)
        pngs += [ARTIFACTS / size / f"{n}.png" for n in names]
    ms = iter(_measure(svgs, pngs))
    return {size: {n: next(ms) for n in names} for size in SIZES}


def test_gallery_covers_every_analysis(gallery):
    from unlearn_core.analyses.registry import ANALYSES

    prefixes = {"scorecard": "scorecard", "keyword_recovery": "keyword", "concept_vectors": "concept",
                "sae_restoration": "sae"}
    for name in ANALYSES:
        assert any(k.startswith(prefixes.get(name, name)) for k in gallery), name
    assert {"verdict_headline", "verdict_evidence"} <= set(gallery) and len(gallery) >= 25


@pytest.mark.parametrize("size", SIZES)
def test_every_chart_reads_at_every_size(gallery, measured, size):
    problems = []
    for name, m in measured[size].items():
        assert m["texts"], name
        problems += layout_problems(name, m)
        if size == "screen":
            continue
        p = PRESETS[size]
        assert abs(m["W"] - p.width_px) <= 1, (name, m["W"])
        # a chart of many rows (the verdict headline, a tall heatmap) may grow taller for its row labels, never
        # shorter or wider: a column stays a column
        grown = paper_figure(gallery[name], size).layout.height or p.height_px
        assert abs(m["H"] - grown) <= 1 and m["H"] >= p.height_px - 1, (name, m["W"], m["H"], grown)
        pt_per_px = PT_PER_IN / PX_PER_IN  # the canvas is printed at its CSS size (W / 96 in ~ the preset width)
        for t in m["texts"]:
            if t["fs"] * pt_per_px < 7 - 1e-3:  # the SVG writes 9.33333 px for 7 pt
                problems.append(f"{name}: {t['text']!r} at {t['fs'] * pt_per_px:.1f} pt")
        if size != "slide":  # paper: body text 7-9 pt at print size
            sizes = [t["fs"] * pt_per_px for t in m["texts"]]
            assert max(sizes) <= 9 + 1e-3, (name, max(sizes))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


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


def _pdf_clip(pdf: bytes) -> tuple[float, ...]:
    """The first clip rectangle the page's content sets, in pt from the page's corner: where the figure is drawn."""
    import zlib

    for m in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            body = zlib.decompress(m[1])
        except zlib.error:
            continue
        base = re.search(rb"([-\d.]+) 0 0 ([-\d.]+) [-\d.]+ [-\d.]+ cm", body)
        clip = re.search(rb"([-\d.]+) ([-\d.]+) ([-\d.]+) ([-\d.]+) re\s+W", body)
        if base and clip:
            k = abs(float(base[1]))
            return tuple(float(v) * k for v in clip.groups())
    raise AssertionError("no clipped content in the PDF")


def test_pdf_draws_the_figure_from_the_page_corner(gallery):
    """kaleido prints with Chrome's 0.1 in page margins, which drew the figure 0.1 in down and right and cut its
    bottom and right edges (the x axis title at "Two columns"); export.py prints with none."""
    from unlearn_core.report.export import figure_bytes

    pdf = figure_bytes(gallery["attribution_key_share"], "pdf", preset="two_columns")
    x, y, w, h = _pdf_clip(pdf)
    box = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert abs(x) < 0.5 and abs(y) < 0.5, (x, y)  # 6.75 pt (9 px) from the corner today
    assert w >= float(box[1]) - 0.5 and h >= float(box[2]) - 0.5, (w, h, box.groups())
