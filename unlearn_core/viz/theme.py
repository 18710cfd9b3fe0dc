"""One visual language for every page and export: colours, fonts, axes, colour scales.

Readers compare checkpoints across many pages, so a checkpoint must keep its colour everywhere: the original is
always black, the retain-only reference always green, and unlearned checkpoints keep the colour the colour book gave
their name (pin_colors), else take the free colours by sorted name.
All categorical colours are colour-blind safe (Okabe-Ito first, then Paul Tol's "muted" set); difference heatmaps
use ColorBrewer PuOr (diverging, CB safe, white at zero) and magnitudes use cividis (sequential, CB safe).

Importing this module registers (and enables) the "unlearn_audit" template in plotly and theme in altair; both
registrations are idempotent and cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import altair as alt
import plotly.graph_objects as go
import plotly.io as pio

__all__ = [
    "DIVERGING_COLORS",
    "FONT_FAMILY",
    "OKABE_ITO",
    "ORIGINAL_COLOR",
    "RETAIN_ONLY_COLOR",
    "SEQUENTIAL_COLORS",
    "THEME_NAME",
    "TOL_MUTED",
    "altair_color_scale",
    "altair_diverging_scale",
    "altair_sequential_scale",
    "apply_plotly",
    "assign_colors",
    "checkpoint_colors",
    "checkpoint_order",
    "pin_colors",
    "pinned",
    "symmetric_range",
    "use_theme",
]

THEME_NAME = "unlearn_audit"

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
ORIGINAL_COLOR = OKABE_ITO["black"]  # the reference everything is compared against
RETAIN_ONLY_COLOR = OKABE_ITO["bluish_green"]  # the "truly never learned it" reference
# Unlearned checkpoints: strongest contrast on white first, yellow (weak on white) last.
_UNLEARNED_OKABE_ITO = tuple(
    OKABE_ITO[k] for k in ("vermillion", "blue", "orange", "reddish_purple", "sky_blue", "yellow")
)
# Paul Tol's "muted" qualitative set (CB safe), minus its pale grey, for audits with more than 6 unlearned models.
TOL_MUTED = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499")
UNLEARNED_COLORS = _UNLEARNED_OKABE_ITO + TOL_MUTED

# ColorBrewer PuOr, orange (negative) -> white (0) -> purple (positive); pair with a range symmetric around 0.
DIVERGING_COLORS = (
    "#7F3B08", "#B35806", "#E08214", "#FDB863", "#FEE0B6", "#F7F7F7",
    "#D8DAEB", "#B2ABD2", "#8073AC", "#542788", "#2D004B",
)  # fmt: skip
# cividis: perceptually uniform and readable with any colour-vision deficiency.
SEQUENTIAL_COLORS = (
    "#00224E", "#123570", "#3B496C", "#575D6D", "#707173", "#8A8678", "#A59C74", "#C3B369", "#E1CC55", "#FEE838",
)  # fmt: skip

FONT_FAMILY = "Source Sans Pro, Helvetica, Arial, sans-serif"  # Streamlit's font where present
_TEXT = "#262730"
_GRID = "#E6E6E6"
_AXIS = "#444444"


# ---------------------------------------------------------------------------------------------------------------
# checkpoint colours


def checkpoint_order(names: Iterable[str], original: str = "original", retain_only: str = "retain_only") -> list[str]:
    """Display order used by legends and category axes: original, unlearned (sorted), retain-only."""
    uniq = set(names)
    unlearned = sorted(uniq - {original, retain_only})
    return [n for n in (original,) if n in uniq] + unlearned + [n for n in (retain_only,) if n in uniq]


# name -> colour kept across workspaces (run.saved.colour_book: the app pins its folder's book when a workspace is
# applied); names not in it take the colours it leaves free
_PINNED: dict[str, str] = {}


def pin_colors(book: dict[str, str]) -> None:
    """Pin checkpoint names to colours for every chart drawn after this (replaces the previous pins)."""
    _PINNED.clear()
    _PINNED.update({k: v for k, v in book.items() if v in UNLEARNED_COLORS})


def pinned() -> dict[str, str]:
    return dict(_PINNED)


def assign_colors(book: dict[str, str], names: Iterable[str], original: str = "original",
                  retain_only: str = "retain_only") -> dict[str, str]:
    """The book with every new unlearned name (sorted) given the first colour the book has not given out yet (after
    all 15: the one given out least), so a name once seen keeps its colour in every later workspace."""
    book = dict(book)
    for n in sorted(set(names) - {original, retain_only} - set(book)):
        used = list(book.values())
        book[n] = min(UNLEARNED_COLORS, key=lambda c: (used.count(c), UNLEARNED_COLORS.index(c)))
    return book


def checkpoint_colors(
    names: Sequence[str], original: str = "original", retain_only: str = "retain_only"
) -> dict[str, str]:
    """Colour of every checkpoint name, independent of the order the names were given in.

    Pinned names (pin_colors) keep their colour; the others take the colours left free, in sorted-name order, so a
    page listing ["npo", "ga"] and another listing ["ga", "npo"] agree. Two names pinned to one colour in the same
    set: the later one (sorted) moves to a free colour. Beyond 15 unlearned checkpoints colours repeat (a legend that
    long is unreadable anyway).
    """
    out: dict[str, str] = {}
    unlearned = sorted(set(names) - {original, retain_only})
    taken: dict[str, str] = {}
    for n in unlearned:
        c = _PINNED.get(n)
        if c is not None and c not in taken.values():
            taken[n] = c
    free = [c for c in UNLEARNED_COLORS if c not in taken.values()] or list(UNLEARNED_COLORS)
    rest = [n for n in unlearned if n not in taken]
    taken.update({n: free[i % len(free)] for i, n in enumerate(rest)})
    for n in names:
        out[n] = ORIGINAL_COLOR if n == original else RETAIN_ONLY_COLOR if n == retain_only else taken[n]
    return out


def altair_color_scale(names: Sequence[str], original: str = "original", retain_only: str = "retain_only") -> alt.Scale:
    """alt.Scale mapping checkpoint names to their colours (use as `alt.Color("checkpoint:N", scale=...)`)."""
    domain = checkpoint_order(names, original, retain_only)
    colors = checkpoint_colors(domain, original, retain_only)
    return alt.Scale(domain=domain, range=[colors[n] for n in domain])


# ---------------------------------------------------------------------------------------------------------------
# continuous scales


def symmetric_range(values: Iterable[float]) -> tuple[float, float]:
    """(-m, m) with m = max |value|, so zero sits on the white centre of the diverging scale.

    All-zero (e.g. identical checkpoints) or empty input gives (-1, 1) rather than a degenerate range.
    """
    m = 0.0
    for v in values:
        v = float(v)
        if math.isfinite(v):
            m = max(m, abs(v))
    m = m if m > 0 else 1.0
    return -m, m


def altair_diverging_scale(limit: float | None = None) -> alt.Scale:
    """Diverging PuOr scale centred on zero; pass `limit` (e.g. from symmetric_range) to share it across charts."""
    if limit is not None:
        return alt.Scale(range=list(DIVERGING_COLORS), domain=[-limit, limit], domainMid=0)
    return alt.Scale(range=list(DIVERGING_COLORS), domainMid=0)


def altair_sequential_scale() -> alt.Scale:
    return alt.Scale(range=list(SEQUENTIAL_COLORS))


# ---------------------------------------------------------------------------------------------------------------
# plotly


def _plotly_template() -> go.layout.Template:
    axis = {
        "showline": True,
        "linecolor": _AXIS,
        "linewidth": 1,
        "mirror": False,
        "ticks": "outside",
        "tickcolor": _AXIS,
        "gridcolor": _GRID,
        "zerolinecolor": "#BBBBBB",
        "title": {"font": {"size": 15}, "standoff": 10},
        "tickfont": {"size": 13},
        "automargin": True,
    }
    template = go.layout.Template(pio.templates["plotly_white"])
    template.layout.update(
        paper_bgcolor="white",
        plot_bgcolor="white",
        font={"family": FONT_FAMILY, "size": 14, "color": _TEXT},
        title={"x": 0, "xanchor": "left", "xref": "paper", "font": {"size": 18}},
        colorway=[ORIGINAL_COLOR, *UNLEARNED_COLORS, RETAIN_ONLY_COLOR],
        colorscale={
            "sequential": list(SEQUENTIAL_COLORS),
            "sequentialminus": list(SEQUENTIAL_COLORS),
            "diverging": list(DIVERGING_COLORS),
        },
        xaxis=axis,
        yaxis=axis,
        legend={"font": {"size": 13}, "title": {"font": {"size": 13}}},
        hoverlabel={"font": {"family": FONT_FAMILY, "size": 13}},
        margin={"l": 70, "r": 30, "t": 60, "b": 60},
    )
    return template


def apply_plotly(fig: go.Figure, title: str, x_title: str, y_title: str) -> go.Figure:
    """Theme a plotly figure and give it a title and labelled axes (an unlabelled axis is a bug in an audit plot)."""
    for label, value in (("title", title), ("x_title", x_title), ("y_title", y_title)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"apply_plotly: {label} must be a non-empty string, got {value!r}")
    fig.update_layout(template=THEME_NAME, title={"text": title}, xaxis_title=x_title, yaxis_title=y_title)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# altair


def _altair_theme() -> alt.theme.ThemeConfig:
    axis = {
        "domain": True,
        "domainColor": _AXIS,
        "tickColor": _AXIS,
        "gridColor": _GRID,
        "labelFontSize": 13,
        "titleFontSize": 15,
        "titleFontWeight": "normal",
        "labelColor": _TEXT,
        "titleColor": _TEXT,
    }
    return {
        "config": {
            "background": "white",
            "font": FONT_FAMILY,
            "view": {"stroke": None, "continuousWidth": 500, "continuousHeight": 320},
            "title": {"anchor": "start", "fontSize": 18, "fontWeight": "normal", "color": _TEXT, "offset": 12},
            "axis": axis,
            "legend": {"labelFontSize": 13, "titleFontSize": 13, "titleFontWeight": "normal"},
            "header": {"labelFontSize": 13, "titleFontSize": 15},
            "range": {
                "category": [ORIGINAL_COLOR, *UNLEARNED_COLORS, RETAIN_ONLY_COLOR],
                "diverging": list(DIVERGING_COLORS),
                "heatmap": list(SEQUENTIAL_COLORS),
                "ramp": list(SEQUENTIAL_COLORS),
            },
        }
    }


def use_theme() -> None:
    """Register the plotly template and altair theme and make both the defaults (idempotent)."""
    pio.templates[THEME_NAME] = _plotly_template()
    pio.templates.default = THEME_NAME
    alt.theme.register(THEME_NAME, enable=True)(_altair_theme)


use_theme()
