"""Sidebar shown on every page: the applied workspace (checkpoints in their colours), data sizes, results store."""

from __future__ import annotations

import html

import streamlit as st

from unlearn_core.viz.theme import checkpoint_colors, checkpoint_order
from views._shared import state

ROLE_NOTE = {"original": "original", "retain_only": "retain-only reference"}


def chips(names: list[str]) -> str:
    """HTML legend: one coloured swatch per checkpoint (same colours as every chart)."""
    colors = checkpoint_colors(names)
    parts = []
    for n in checkpoint_order(names):
        style = f"background:{colors[n]}"
        if n == "retain_only":
            style = f"background:repeating-linear-gradient(45deg,{colors[n]} 0 3px,white 3px 6px);" \
                    f"border:1px solid {colors[n]}"
        parts.append(f'<span class="ckpt-chip"><span class="ckpt-swatch" style="{style}"></span>'
                     f'{html.escape(n)}</span>')
    return '<div class="ckpt-legend">' + "".join(parts) + "</div>"


def shown_path(path: str) -> str:
    """A path as the UI shows it: relative to the workspace root (or the demo lab's folder), so screenshots and
    shared links do not carry a machine's absolute cache paths; a path outside both keeps its file name only."""
    from pathlib import Path

    from unlearn_core.checkpoints.guard import workspace_root

    p = Path(path).expanduser().resolve()
    try:
        roots = [r for r in (workspace_root(), state.lab_dir().resolve()) if r is not None]
    except Exception:  # noqa: BLE001 - a bad root is reported by the workspace page; here only the name matters
        roots = []
    for root in roots:
        if p.is_relative_to(root):
            return str(Path(root.name) / p.relative_to(root))
    return f".../{p.name}"


def _preset_label(key: str) -> str:
    from unlearn_core.viz.presets import PRESETS

    return PRESETS[key].label if key in PRESETS else "Screen (as shown here)"


def render() -> None:
    ws = state.workspace()
    with st.sidebar:
        st.markdown("**Workspace**")
        st.markdown(chips(ws.names()), unsafe_allow_html=True)
        d = ws.data
        st.caption(f"forget {len(d.forget)} · retain {len(d.retain)} · holdout {len(d.holdout)} items")
        st.caption(f"Results store: `{shown_path(ws.store_path)}`")
        st.selectbox("Figure size for downloads", ["two_columns", "column", "slide", "screen"],
                     key="figure_preset", format_func=_preset_label,
                     help="SVG/PDF/PNG downloads are laid out at this print size, text 7-9 pt on paper")
