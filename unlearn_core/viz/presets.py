"""Figure size presets for papers and slides: the figure laid out at the size it will be printed.

Why: a figure exported at screen size (900 x 500 px) and shrunk into a 3.3 in paper column prints its text at about
3 pt. Here the layout itself is made at print size (1 in = 96 CSS px, Chrome's PDF and SVG unit), with font sizes
given in points at that size, so what the reader sees is what was checked: body text 7-8 pt, titles 9 pt on paper,
larger on slides. `paper_figure` also moves everything into the canvas (annotations placed in a right margin meant
for a wide screen, a legend beside the plot), wraps long titles and tick labels, and gives the retain-only reference
its hatching wherever a trace is named after it.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass

import plotly.graph_objects as go

PX_PER_IN = 96  # CSS px: kaleido's SVG/PDF unit (Chrome prints 96 px to the inch)
PT_PER_IN = 72


@dataclass(frozen=True)
class SizePreset:
    key: str
    label: str
    width_in: float
    height_in: float
    font_pt: float  # ticks, legend, annotations, in-chart text
    title_pt: float
    axis_title_pt: float

    @property
    def width_px(self) -> int:
        return round(self.width_in * PX_PER_IN)

    @property
    def height_px(self) -> int:
        return round(self.height_in * PX_PER_IN)

    def px(self, pt: float) -> float:
        """CSS px for a size in points at print size, rounded UP to 1/100 px (plotly writes some sizes with two
        decimals: 9.33 px would print at 6.998 pt)."""
        return math.ceil(pt * PX_PER_IN / PT_PER_IN * 100) / 100


PRESETS: dict[str, SizePreset] = {
    "column": SizePreset("column", "One column (3.3 in)", 3.3, 2.9, 7, 8.5, 7.5),
    "two_columns": SizePreset("two_columns", "Two columns (7 in)", 7.0, 3.6, 8, 9, 8.5),
    "slide": SizePreset("slide", "Slide (10 in, 16:9)", 10.0, 5.625, 14, 18, 15),
}
SCREEN = "screen"  # the dashboard's own size (no preset): 900 x 500 px, the theme's fonts


def get_preset(key: str) -> SizePreset:
    if key not in PRESETS:
        raise ValueError(f"unknown size preset {key!r}; available: {', '.join(PRESETS)}")
    return PRESETS[key]


def _wrap(text: str, chars: int) -> str:
    """Wrap plain text at word boundaries into <br>-separated lines of at most `chars` characters (HTML tags and
    existing <br> kept)."""
    if not text:
        return text
    lines = []
    for part in re.split(r"<br\s*/?>", str(text)):
        plain = re.sub(r"<[^>]+>", "", part)
        tagged = re.fullmatch(r"<(b|i|em|sup|sub)>(.*)</\1>", part)
        if len(plain) <= chars:
            lines.append(part)
        elif tagged:  # one tag around the whole line (a bold verdict): wrap the inside, tag every line
            lines += [f"<{tagged[1]}>{t}</{tagged[1]}>" for t in textwrap.wrap(tagged[2], max(chars, 6))]
        elif "<" in part:  # mixed markup: leave it whole rather than cut inside a tag
            lines.append(part)
        else:
            lines += textwrap.wrap(part, max(chars, 6), break_long_words=True)
    return "<br>".join(lines)


def _chars(width_px: float, font_px: float) -> int:
    """How many characters of this font fit a width (0.55 em per character: a sans-serif average, generous)."""
    return max(8, int(width_px / (0.55 * font_px)))


def _is_retain_only(name: str | None) -> bool:
    return bool(name) and re.sub(r"[\s_-]+", "", str(name).lower()).startswith("retainonly")


def paper_figure(fig: go.Figure, preset: str | SizePreset) -> go.Figure:
    """A copy of a plotly figure laid out at a preset's print size; the dashboard's figure is left as it is."""
    p = preset if isinstance(preset, SizePreset) else get_preset(preset)
    out = go.Figure(fig)  # a copy; to_dict() would turn numeric arrays into base64 blobs the helpers cannot read
    body, title_px, axis_px = p.px(p.font_pt), p.px(p.title_pt), p.px(p.axis_title_pt)
    w, h = p.width_px, p.height_px
    lay = out.layout
    margin = {"l": 8, "r": 8, "b": 8, "t": 8}
    # title: wrapped to the canvas, pushes the plot down (automargin) instead of being cut off
    title = lay.title.text or ""
    title = _wrap(title, _chars(w - 16, title_px))
    out.update_layout(
        width=w, height=h, autosize=False, font={"size": body},
        # plotly anchors a multi-line title by its last line: pad the extra lines down into the canvas
        title={"text": title, "font": {"size": title_px}, "x": 0, "xanchor": "left", "xref": "container",
               "y": 1, "yanchor": "top", "yref": "container", "automargin": True,
               "pad": {"l": 6, "t": 6 + round(2.4 * title_px * title.count("<br>"))}},
        margin=margin,
        hoverlabel={"font": {"size": body}},
    )
    # the legend goes under the title, horizontal, inside the canvas
    out.update_layout(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1, "yanchor": "bottom",
                              "yref": "paper", "font": {"size": body},
                              "title": {"font": {"size": body}, "side": "top"},  # not left of the entries
                              "entrywidth": 0, "itemwidth": 30, "itemsizing": "constant"})
    for key in list(lay.to_plotly_json()):
        if not re.fullmatch(r"[xy]axis\d*", key):
            continue
        ax = lay[key]
        span = w if key.startswith("x") else 0.6 * h  # the plot area, not the canvas, holds a y title
        dom = ax.domain if ax.domain else (0, 1)
        text = ax.title.text or ""
        ax.title.text = _wrap(text, _chars((dom[1] - dom[0]) * span - 10, axis_px)) if text else text
        ax.title.font.size = axis_px
        ax.title.standoff = 4
        ax.tickfont.size = body
        ax.automargin = True
        if ax.type == "log":
            _log_ticks(out, key)
    n_x = sum(1 for k in lay.to_plotly_json() if re.fullmatch(r"xaxis\d*", k)) or 1
    _wrap_category_ticks(out, w / n_x, body)
    meta = out.layout.meta
    row_chart = isinstance(meta, dict) and bool(meta.get("rows"))
    _wrap_y_categories(out, w * (0.42 if row_chart else 0.3), body)  # a row chart's labels are its content
    if row_chart:
        _one_line_rows(out, w * 0.62, body)
    _fit_cell_text(out, h, body)
    for ann in lay.annotations or ():
        ann.font.size = body
        ann.text = _wrap(ann.text or "", _chars(w * 0.45, body))
        if ann.xref == "paper" and ann.x is not None and ann.x > 1:  # a screen margin note: inside the plot
            ann.x, ann.xanchor = 1, "right"
        if ann.xref == "paper" and ann.x is not None and ann.x < 0:
            ann.x, ann.xanchor = 0, "left"
        if ann.yref == "paper" and ann.y is not None and ann.y > 1:
            ann.y, ann.yanchor = 1, "top"
    shrink = max(0.5, min(1.0, w / 900))  # markers were sized for a 900 px screen figure
    entries = [tr for tr in out.data if tr.name and tr.showlegend is not False]
    # more than three entries on a narrow canvas: two columns, so the legend does not eat the plot's height
    columns = 2 if len(entries) > 3 and w < 500 and not row_chart else 1  # a row chart grows taller anyway
    if columns == 2:
        out.update_layout(legend={"entrywidth": 0.5, "entrywidthmode": "fraction"})
    for tr in entries:  # a long legend entry wraps instead of leaving the canvas (or its column)
        tr.name = _wrap(tr.name, _chars(w * 0.8 / columns - (30 if columns == 2 else 0), body))
    for tr in out.data:
        if hasattr(tr, "textfont"):
            tr.textfont.size = body
        size = getattr(getattr(tr, "marker", None), "size", None)
        if tr.type == "scatter" and isinstance(size, (int, float)):
            tr.marker.size = max(4, size * shrink)
        marker = getattr(tr, "marker", None)
        has_scale = marker is not None and getattr(marker, "colorscale", None) is not None
        if tr.type in ("heatmap", "contour") or has_scale:
            cb = tr.colorbar if tr.type in ("heatmap", "contour") else marker.colorbar
            if cb is not None:
                cb.thickness = max(6, round(body * 0.8))
                cb.len = 0.8
                cb.tickfont.size = body
                cb.title.font.size = body
                cb.title.side = "right"  # rotated beside the bar: never wider than the canvas
                cb.title.text = _wrap(cb.title.text or "", _chars(0.6 * h, body))
                cb.x, cb.xanchor, cb.xref = 1, "left", "paper"
                cb.xpad = 4
        if _is_retain_only(getattr(tr, "name", None)) and tr.type == "bar":  # (names wrapped above still match)
            tr.marker.pattern.shape = tr.marker.pattern.shape or "/"
    _fit_right(out)
    _grow_for_rows(out, h, body)
    return out


def _one_line_rows(fig: go.Figure, width: float, body: float) -> None:
    """A row chart's multi-line labels go on one line (parts joined by " · ") where the canvas is wide enough: a
    two-column or slide figure then needs a third of the height."""
    values = list(dict.fromkeys(y for tr in fig.data if tr.y is not None for y in tr.y if isinstance(y, str)))
    joined = [v.replace("<br>", " · ") for v in values]
    if not values or any(len(re.sub(r"<[^>]+>", "", j)) > _chars(width, body) for j in joined):
        return
    fig.layout.yaxis.tickmode = "array"
    fig.layout.yaxis.tickvals = values
    fig.layout.yaxis.ticktext = joined


def _grow_for_rows(fig: go.Figure, height: float, body: float) -> None:
    """A chart of one labelled row per item (meta {"rows": n}: the verdict headline) gets the height its row labels
    need at print size instead of overlapping them; the width stays the preset's (a column is a column)."""
    meta = fig.layout.meta
    rows = meta.get("rows") if isinstance(meta, dict) else None
    if not rows:
        return
    ticks = fig.layout.yaxis.ticktext or [y for tr in fig.data if tr.y is not None for y in tr.y]
    lines = max((str(t).count("<br>") + 1 for t in ticks if t is not None), default=1)
    need = rows * (lines * 1.25 * body + 1.2 * body)
    plot = 0.55 * height  # what the plot area gets of the preset's canvas after title, legend and x axis
    if need > plot:
        fig.layout.height = round(height + need - plot)


def _wrap_category_ticks(fig: go.Figure, width_per_panel: float, body: float) -> None:
    """Long category labels on an x axis wrap onto lines so neighbours do not overlap at print size."""
    cats: dict[str, list[str]] = {}
    for tr in fig.data:
        xs = getattr(tr, "x", None)
        if xs is None or tr.type not in ("bar", "box", "scatter") or getattr(tr, "orientation", None) == "h":
            continue
        if not all(isinstance(x, str) for x in xs):
            continue
        axis = "xaxis" + (tr.xaxis[1:] if tr.xaxis and tr.xaxis != "x" else "")
        for x in xs:
            if x not in cats.setdefault(axis, []):
                cats[axis].append(x)
    for axis, values in cats.items():
        per = width_per_panel / max(len(values), 1)
        chars = max(6, int(per / (0.55 * body)))
        if all(len(re.sub(r"<[^>]+>", "", v)) <= chars for v in values):
            continue
        fig.layout[axis].tickmode = "array"
        fig.layout[axis].tickvals = values
        fig.layout[axis].ticktext = [_wrap(v, chars) for v in values]
        fig.layout[axis].tickangle = 0


def _fit_right(fig: go.Figure) -> None:
    """A colour bar needs room on the right: reserve it in the margin (it is drawn beside the plot)."""
    if any(tr.type in ("heatmap", "contour") and tr.showscale is not False for tr in fig.data):
        fig.layout.margin.r = max(fig.layout.margin.r or 0, 48)


def _log_ticks(fig: go.Figure, axis: str) -> None:
    """A log axis spanning a decade or more gets one full-size label per decade: plotly's automatic log ticks add
    small digits ("2", "5") at 70% of the tick font, under 7 pt at print size."""
    letter = axis[0]
    ref = letter + axis[5:]
    values = []
    for tr in fig.data:
        if (getattr(tr, letter + "axis", None) or letter) != ref:
            continue
        data = getattr(tr, letter, None)
        for v in (() if data is None else data):
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if f > 0:
                values.append(f)
    if not values:
        return
    lo, hi = min(values), max(values)
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = [m * 10.0 ** k for k in range(k0, k1 + 1) for m in (1, 2, 5) if lo / 1.5 <= m * 10.0 ** k <= hi * 1.5]
    if len(ticks) > 7:
        ticks = [t for t in ticks if f"{t:g}".lstrip("0.").startswith("1")] or ticks
    if len(ticks) < 2:  # a narrow range: its ends, so the axis never shows a single tick
        ticks = sorted({float(f"{lo:.2g}"), float(f"{hi:.2g}")})
    fig.layout[axis].tickmode = "array"
    fig.layout[axis].tickvals = ticks
    fig.layout[axis].ticktext = [f"{t:g}" for t in ticks]


def _fit_cell_text(fig: go.Figure, height: float, body: float) -> None:
    """Heatmap cells keep only their first line (the value) when a row is too short for all of them at print size;
    the rest (intervals, notes) stays in the figure's table."""
    for tr in fig.data:
        if tr.type != "heatmap" or tr.text is None or not tr.texttemplate:
            continue
        rows = max(1, len(tr.z) if tr.z is not None else 1)
        lines = max((str(c).count("<br>") + 1 for row in tr.text for c in row), default=1)
        if lines > 1 and 0.7 * height / rows < lines * 1.25 * body:
            tr.text = [[str(c).split("<br>")[0] for c in row] for row in tr.text]


def _wrap_y_categories(fig: go.Figure, width: float, body: float) -> None:
    """Long category labels on a y axis (heatmap rows, horizontal bars) wrap to at most `width` px."""
    chars = _chars(width, body)
    for tr in fig.data:
        ys = getattr(tr, "y", None)
        horizontal = tr.type == "heatmap" or getattr(tr, "orientation", None) == "h"
        if ys is None or not horizontal or not all(isinstance(y, str) for y in ys):
            continue
        if all(len(re.sub(r"<[^>]+>", "", y)) <= chars for y in ys):
            continue
        axis = "yaxis" + (tr.yaxis[1:] if tr.yaxis and tr.yaxis != "y" else "")
        values = list(dict.fromkeys(ys))
        fig.layout[axis].tickmode = "array"
        fig.layout[axis].tickvals = values
        fig.layout[axis].ticktext = [_wrap(v, chars) for v in values]
