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
            lines += _wrap_words(part, max(chars, 6))
    return "<br>".join(lines)


def _wrap_words(text: str, chars: int) -> list[str]:
    """Lines of at most `chars` characters, broken between words, then after an underscore or hyphen inside a long
    word, and only then inside it; never leaving a line of one or two characters (a reader never sees "recover" /
    "y": such a leftover stays on the line before, a little longer)."""
    pieces: list[tuple[str, bool]] = []  # (text, continues the previous piece's word)
    for word in text.split():
        parts = re.findall(r"[^_-]+[_-]*|[_-]+", word) if len(word) > chars else [word]
        for i, part in enumerate(parts):  # "suppressed_" + "head", never "suppre" + "ssed_"
            while len(part) > 2 * chars:  # only a very long run without a break is cut inside
                pieces.append((part[:chars], i > 0 or part is not parts[0]))
                part = part[chars:]
            pieces.append((part, i > 0 or (pieces and pieces[-1][0] and part is not parts[i])))
    lines: list[tuple[str, bool]] = []
    for piece, glued in pieces:
        joined = (lines[-1][0] + ("" if glued else " ") + piece) if lines else piece
        if lines and len(joined) <= chars:
            lines[-1] = (joined, lines[-1][1])
        else:
            lines.append((piece, glued))
    out: list[str] = []
    for line, glued in lines:
        if out and len(line) <= 2:
            out[-1] += ("" if glued else " ") + line
        else:
            out.append(line)
    return out


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
    meta = out.layout.meta
    row_chart = isinstance(meta, dict) and bool(meta.get("rows"))
    for key in list(lay.to_plotly_json()):
        if not re.fullmatch(r"[xy]axis\d*", key):
            continue
        ax = lay[key]
        # the plot area, not the canvas, holds a title: an x title is centred under a plot that row labels (a row
        # chart's are its content) and the y axis push right
        span = w * (0.55 if row_chart else 0.8) if key.startswith("x") else 0.6 * h
        dom = ax.domain if ax.domain else (0, 1)
        text = ax.title.text or ""
        ax.title.text = _wrap(text, _chars((dom[1] - dom[0]) * span - 10, axis_px)) if text else text
        ax.title.font.size = axis_px
        ax.title.standoff = 4
        ax.tickfont.size = body
        ax.automargin = True
        if key.startswith("x") and ax.showticklabels is False:  # a shared axis between stacked panels: its tick
            ax.ticks, ax.ticklen = "", 0  # marks would cross the next panel's title
        if key.startswith("x") and ax.ticktext is not None and ax.tickvals is not None and ax.tickangle:
            slot = 0.85 * w / max(len(ax.tickvals), 1)  # the chart's own turned labels, too dense to slant
            if slot < 2.7 * body:
                ax.tickangle = -90
        if ax.type == "log":
            _log_ticks(out, key)
    n_x = sum(1 for k in lay.to_plotly_json() if re.fullmatch(r"xaxis\d*", k)) or 1
    _wrap_category_ticks(out, w / n_x, body)
    ya = out.layout.yaxis
    own = (list(ya.tickvals), list(ya.ticktext)) if ya.tickvals is not None and ya.ticktext is not None else None
    # a row chart's labels are its content; a heatmap's rows are few columns wide and its labels need lines less
    heat = any(tr.type == "heatmap" for tr in out.data)
    _wrap_y_categories(out, w * (0.42 if row_chart else 0.45 if heat else 0.3), body)
    if row_chart:
        _one_line_rows(out, w * 0.62, body, own)
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
    n_bars = sum(tr.type in ("heatmap", "contour") and tr.showscale is not False for tr in out.data)
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
                cb.len = 0.8 if n_bars < 2 else cb.len
                cb.tickfont.size = body
                cb.title.font.size = body
                cb.title.side = "right"  # rotated beside the bar: never wider than the canvas
                cb.title.text = _wrap(cb.title.text or "", _chars(0.6 * h, body))
                cb.x, cb.xanchor, cb.xref = 1, "left", "paper"
                cb.xpad = 4
        if _is_retain_only(getattr(tr, "name", None)) and tr.type == "bar":  # (names wrapped above still match)
            tr.marker.pattern.shape = tr.marker.pattern.shape or "/"
    for tr in out.data:  # legend groups (a toggle on screen) lay a horizontal legend out one group a row
        if tr.legendgroup:
            tr.legendgroup = None
    _space_panels(out, w, body, axis_px)
    _space_rows(out, h, body)
    _clear_top(out, w, h, body, title_px, columns)
    _fit_right(out)
    _grow_for_rows(out, h, body)
    _grow_for_categories(out, h, body)
    height = out.layout.height or h
    _fit_cell_text(out, w, height, body)
    _place_colorbars(out, height, body)
    return out


def _space_panels(fig: go.Figure, width: float, body: float, axis_px: float) -> None:
    """Panels side by side (subplots in one row) get the gap their right-hand panels' y axes need at print size
    (tick labels and a wrapped title): a narrow canvas otherwise draws a panel's y title over its left neighbour.
    The panels' titles (annotations centred above each) move with them."""
    lay = fig.layout
    xs = sorted((k for k in lay.to_plotly_json() if re.fullmatch(r"xaxis\d*", k) and lay[k].domain),
                key=lambda k: lay[k].domain[0])
    if len(xs) < 2 or len({tuple(lay["y" + k[1:]].domain or (0, 1)) for k in xs if "y" + k[1:] in lay}) != 1:
        return
    plot_w = width - 70
    need = 0.0
    for k in xs[1:]:
        y = lay["y" + k[1:]] if ("y" + k[1:]) in lay else None
        title = (y.title.text or "") if y is not None else ""
        lines = title.count("<br>") + 1 if title else 0
        need = max(need, 5 * 0.55 * body + lines * 1.3 * axis_px + 12)
    gaps = [lay[b].domain[0] - lay[a].domain[1] for a, b in zip(xs, xs[1:], strict=False)]
    if min(gaps) * plot_w >= need:
        return
    n, gap = len(xs), min(0.4, need / plot_w)
    panel = (1 - (n - 1) * gap) / n
    old_centres = [(lay[k].domain[0] + lay[k].domain[1]) / 2 for k in xs]
    for i, k in enumerate(xs):
        lay[k].domain = (max(0.0, round(i * (panel + gap), 6)), min(1.0, round(i * (panel + gap) + panel, 6)))
    for a in lay.annotations or ():
        if a.xref == "paper" and a.x is not None:
            near = min(range(n), key=lambda i: abs(old_centres[i] - a.x))
            if abs(old_centres[near] - a.x) < 0.02:
                a.x = near * (panel + gap) + panel / 2


def _legend_height(fig: go.Figure, width: float, body: float, columns: int = 1) -> float:
    """About how tall a horizontal legend of this figure's entries is at print size (entries wrap into rows)."""
    entries = [tr for tr in fig.data if tr.name and tr.showlegend is not False]
    if not entries or fig.layout.showlegend is False:
        return 0.0
    if columns == 2:
        rows = math.ceil(len(entries) / 2)
    else:
        widths = [len(re.sub(r"<[^>]+>", "", str(tr.name).split("<br>")[0])) * 0.55 * body + 40 for tr in entries]
        rows, used = 1, 0.0
        for wd in widths:
            if used and used + wd > width - 16:
                rows, used = rows + 1, 0.0
            used += wd
    lines = sum(str(tr.name).count("<br>") for tr in entries) // max(columns, 1)
    return (rows + lines) * 1.6 * body + 6


def _space_rows(fig: go.Figure, height: float, body: float) -> None:
    """Panels stacked in one column with a title above each (subplot titles) get the gap those titles need at
    print size: a short canvas otherwise sets a panel's title on the axis line of the panel above."""
    lay = fig.layout
    ys = sorted((k for k in lay.to_plotly_json() if re.fullmatch(r"yaxis\d*", k) and lay[k].domain),
                key=lambda k: -lay[k].domain[1])
    tops = [lay[k].domain[1] for k in ys]
    if any(lay[a].domain[0] < lay[b].domain[1] for a, b in zip(ys, ys[1:], strict=False)):
        return  # panels side by side (or overlaid), not stacked
    titled = [a for a in lay.annotations or () if a.yref == "paper" and a.y is not None
              and any(abs(a.y - t) < 0.02 for t in tops[1:]) and (a.yanchor or "bottom") == "bottom"]
    if len(ys) < 2 or not titled:
        return
    plot_h = 0.55 * height
    need = (max(a.text.count("<br>") + 1 for a in titled) * 1.3 * body + 8) / plot_h
    gaps = [lay[a].domain[0] - lay[b].domain[1] for a, b in zip(ys, ys[1:], strict=False)]
    if min(gaps) >= need:
        return
    n, gap = len(ys), min(0.3, need)
    panel = (1 - (n - 1) * gap) / n
    for i, k in enumerate(ys):
        top = 1 - i * (panel + gap)
        for a in lay.annotations or ():
            if a.yref == "paper" and a.y is not None and abs(a.y - tops[i]) < 0.02:
                a.y = top
        lay[k].domain = (max(0.0, round(top - panel, 6)), min(1.0, round(top, 6)))


def _clear_top(fig: go.Figure, width: float, height: float, body: float, title_px: float, columns: int) -> None:
    """Panels' titles (subplot titles: annotations just above each plot) and a legend above the plot would share
    one band under the title and overlap (plotly keeps a margin for the legend, none for annotations): the legend
    goes under the title, the panels' titles under it, and the top margin holds all three. Y titles are then wrapped
    to the plot's height that is left."""
    lay = fig.layout
    above = [a for a in lay.annotations or () if a.yref == "paper" and a.y is not None and a.y >= 0.98
             and (a.yanchor or "bottom") == "bottom" and a.text]
    if not above:
        return
    title = lay.title.text or ""
    title_h = (title.count("<br>") + 1) * 1.3 * title_px + 8 if title else 0
    legend_h = _legend_height(fig, width, body, columns)
    if legend_h:
        fig.update_layout(legend={"yref": "container", "y": 1 - (title_h + 4) / height, "yanchor": "top"})
    ann_h = max((a.text.count("<br>") + 1) * 1.3 * body for a in above) + 4
    top = math.ceil(title_h + legend_h + ann_h + 8)
    fig.layout.margin.t = max(fig.layout.margin.t or 0, top)
    plot_h = max(0.25 * height, height - top - 4 * body)
    for key in list(lay.to_plotly_json()):
        if re.fullmatch(r"yaxis\d*", key) and lay[key].title.text:
            dom = lay[key].domain or (0, 1)
            text = re.sub(r"<br\s*/?>", " ", lay[key].title.text)
            lay[key].title.text = _wrap(text, _chars((dom[1] - dom[0]) * plot_h - 10, lay[key].title.font.size or body))


def _one_line_rows(fig: go.Figure, width: float, body: float, own: tuple[list, list] | None = None) -> None:
    """A row chart's multi-line labels go on one line (parts joined by " · ") where the canvas is wide enough: a
    two-column or slide figure then needs a third of the height."""
    ax = fig.layout.yaxis
    values = own[0] if own else list(dict.fromkeys(y for tr in fig.data if tr.y is not None
                                                   for y in tr.y if isinstance(y, str)))
    joined = [str(v).replace("<br>", " · ") for v in (own[1] if own else values)]
    if not values or any(len(re.sub(r"<[^>]+>", "", j)) > _chars(width, body) for j in joined):
        return
    ax.tickmode = "array"
    ax.tickvals = values
    ax.ticktext = joined


def _grow_for_rows(fig: go.Figure, height: float, body: float) -> None:
    """A chart of one labelled row per item (meta {"rows": n}: the verdict headline) gets the height its row labels
    need at print size instead of overlapping them; the width stays the preset's (a column is a column)."""
    meta = fig.layout.meta
    rows = meta.get("rows") if isinstance(meta, dict) else None
    if not rows:
        return
    ticks = fig.layout.yaxis.ticktext or [y for tr in fig.data if tr.y is not None for y in tr.y]
    lines = max((str(t).count("<br>") + 1 for t in ticks if t is not None), default=1)
    need = rows * (lines * 1.3 * body + 1.2 * body)
    # what the plot area gets of the preset's canvas after title, legend and x axis
    plot = min(0.55 * height, height - _legend_height(fig, fig.layout.width or 0, body) - 9 * body)
    if need > plot:
        fig.layout.height = round(height + need - plot)


def _wrap_category_ticks(fig: go.Figure, width_per_panel: float, body: float) -> None:
    """Long category labels on an x axis wrap onto lines so neighbours do not overlap at print size."""
    cats: dict[str, list[str]] = {}
    for tr in fig.data:
        xs = getattr(tr, "x", None)
        if xs is None and tr.type == "box" and tr.y is not None and tr.name:  # one box per category, named by it
            xs = [tr.name]
        if xs is None or tr.type not in ("bar", "box", "scatter") or getattr(tr, "orientation", None) == "h":
            continue
        if not all(isinstance(x, str) for x in xs):
            continue
        axis = "xaxis" + (tr.xaxis[1:] if tr.xaxis and tr.xaxis != "x" else "")
        for x in xs:
            if x not in cats.setdefault(axis, []):
                cats[axis].append(x)
    for axis, values in cats.items():
        per = 0.85 * width_per_panel / max(len(values), 1) - body  # the plot is narrower than the canvas; a gap
        chars = max(6, int(per / (0.55 * body)))
        if all(len(re.sub(r"<[^>]+>", "", v)) * 0.55 * body <= per for v in values):
            continue
        wrapped = [_wrap(v, chars) for v in values]
        fig.layout[axis].tickmode = "array"
        fig.layout[axis].tickvals = values
        widest = max(len(line) for w in wrapped for line in re.sub(r"<[^>]+>", "", w.replace("<br>", "\n")).split())
        # a tower of fragments, or words wider than their slot: turn the labels instead
        if max(w.count("<br>") for w in wrapped) >= 3 or per < 2.5 * body or widest * 0.55 * body > per + body:
            fig.layout[axis].ticktext = [re.sub(r"<br\s*/?>", " ", v) for v in values]
            fig.layout[axis].tickangle = -90 if per < 1.4 * body else -45
            slot = 0.85 * width_per_panel / max(len(values), 1)
            step = math.ceil(1.4 * body / slot)  # turned labels need a line's height each: every step-th one
            if step > 1:
                fig.layout[axis].tickvals = values[::step]
                fig.layout[axis].ticktext = [re.sub(r"<br\s*/?>", " ", v) for v in values[::step]]
        else:
            fig.layout[axis].ticktext = wrapped
            fig.layout[axis].tickangle = 0


def _fit_right(fig: go.Figure) -> None:
    """A colour bar needs room on the right: reserve it in the margin (it is drawn beside the plot)."""
    if any(tr.type in ("heatmap", "contour") and tr.showscale is not False for tr in fig.data):
        fig.layout.margin.r = max(fig.layout.margin.r or 0, 48)


def _plain(data):
    """A trace's data as a flat sequence: plotly keeps numeric arrays built from pandas as typed-array dicts
    ({"dtype": "f8", "bdata": base64}), which iterate as their keys."""
    if isinstance(data, dict) and "bdata" in data:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).ravel().tolist()
    return data


def _log_ticks(fig: go.Figure, axis: str) -> None:
    """A log axis spanning a decade or more gets one full-size label per decade: plotly's automatic log ticks add
    small digits ("2", "5") at 70% of the tick font, under 7 pt at print size."""
    letter = axis[0]
    ref = letter + axis[5:]
    values = []
    for tr in fig.data:
        if (getattr(tr, letter + "axis", None) or letter) != ref:
            continue
        data = _plain(getattr(tr, letter, None))
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


def _fit_cell_text(fig: go.Figure, width: float, height: float, body: float) -> None:
    """Heatmap cells keep only their first line (the value) when a row is too short for all of them at print size
    (the rest, intervals and notes, stays in the figure's table), and no number at all when even that is wider or
    taller than its cell: cell numbers spilling into their neighbours read as nonsense; the colour stays."""
    for tr in fig.data:
        if tr.type != "heatmap" or tr.text is None or not tr.texttemplate or tr.z is None:
            continue
        rows = max(1, len(tr.z))
        cols = max(1, max((len(r) for r in tr.z), default=1))
        axis = fig.layout["yaxis" + (tr.yaxis[1:] if tr.yaxis and tr.yaxis != "y" else "")]
        dom = axis.domain or (0, 1)
        cell_h = (dom[1] - dom[0]) * 0.6 * height / rows
        cell_w = max(0.5 * width, width - 150) / cols
        lines = max((str(c).count("<br>") + 1 for row in tr.text for c in row), default=1)
        if lines > 1 and cell_h < lines * 1.25 * body:
            tr.text = [[str(c).split("<br>")[0] for c in row] for row in tr.text]
        longest = max((len(re.sub(r"<[^>]+>", "", str(c))) for row in tr.text for c in row), default=0)
        if cell_h < 1.2 * body or cell_w < longest * 0.55 * body + 4:
            tr.texttemplate = ""


def _place_colorbars(fig: go.Figure, height: float, body: float) -> None:
    """Several colour bars (one per panel) each keep their own stretch of the right edge: where the figure's own
    placements overlap (a print preset's length made them collide), they share the height in bands, top to bottom
    in the order they were, apart by a gap; each gets as many ticks as its length holds."""
    bars = []
    for tr in fig.data:
        if tr.type in ("heatmap", "contour") and tr.showscale is not False:
            bars.append(tr.colorbar)
    if len(bars) < 2:
        return

    def span(cb) -> tuple[float, float]:
        y = 0.5 if cb.y is None else cb.y
        ln = 1 if cb.len is None else cb.len
        anchor = cb.yanchor or "middle"
        lo = y - ln if anchor == "top" else y if anchor == "bottom" else y - ln / 2
        return lo, lo + ln

    spans = [span(cb) for cb in bars]
    clash = any(min(a[1], b[1]) > max(a[0], b[0]) for i, a in enumerate(spans) for b in spans[i + 1:])
    gap = 0.08
    if clash:
        order = sorted(range(len(bars)), key=lambda i: -spans[i][1])
        band = (1 - gap * (len(bars) - 1)) / len(bars)
        for k, i in enumerate(order):
            bars[i].update(y=1 - k * (band + gap), yanchor="top", len=band, lenmode="fraction")
            spans[i] = (1 - k * (band + gap) - band, 1 - k * (band + gap))
    for cb, (lo, hi) in zip(bars, spans, strict=True):
        cb.nticks = max(3, min(6, int((hi - lo) * 0.6 * height / (2.2 * body))))
        cb.title.text = _wrap(re.sub(r"<br\s*/?>", " ", cb.title.text or ""), _chars((hi - lo) * 0.6 * height, body))


def _grow_for_categories(fig: go.Figure, height: float, body: float) -> None:
    """A heatmap with more rows than its print canvas holds (a label line and a little air each) grows taller, as a
    row chart does, instead of printing its row labels over each other."""
    if isinstance(fig.layout.meta, dict) and fig.layout.meta.get("rows"):
        return  # a row chart has its own rule
    need = 0.0
    for tr in fig.data:
        if tr.type != "heatmap" or tr.y is None or len(tr.y) < 2:
            continue
        axis = fig.layout["yaxis" + (tr.yaxis[1:] if tr.yaxis and tr.yaxis != "y" else "")]
        ticks = axis.ticktext or [str(y) for y in tr.y]
        lines = max(str(t).count("<br>") + 1 for t in ticks)
        dom = axis.domain or (0, 1)
        need = max(need, len(tr.y) * (lines * 1.25 + 0.3) * body / max(dom[1] - dom[0], 0.1))
    plot = 0.55 * height
    if need > plot:
        fig.layout.height = round(height + need - plot)


def _wrap_y_categories(fig: go.Figure, width: float, body: float) -> None:
    """Long category labels on a y axis (heatmap rows, horizontal bars) wrap to at most `width` px."""
    chars = _chars(width, body)
    for tr in fig.data:
        ys = getattr(tr, "y", None)
        horizontal = tr.type == "heatmap" or getattr(tr, "orientation", None) == "h"
        if ys is None or not horizontal or not all(isinstance(y, str) for y in ys):
            continue
        shown = fig.layout["yaxis" + (tr.yaxis[1:] if tr.yaxis and tr.yaxis != "y" else "")].ticktext or ys
        if all(len(re.sub(r"<[^>]+>", "", str(y))) <= chars for y in shown):
            continue
        axis = "yaxis" + (tr.yaxis[1:] if tr.yaxis and tr.yaxis != "y" else "")
        ax = fig.layout[axis]
        if ax.tickvals is not None and ax.ticktext is not None:  # the chart's own labels (ids on the axis)
            ax.ticktext = [_wrap(str(t), chars) for t in ax.ticktext]
            continue
        values = list(dict.fromkeys(ys))
        ax.tickmode = "array"
        ax.tickvals = values
        ax.ticktext = [_wrap(v, chars) for v in values]
