"""Sidebar shown on every page: the applied workspace (checkpoints in their colours), data sizes, results store."""

from __future__ import annotations

import html

import streamlit as st

from pages._shared import state
from unlearn_core.viz.theme import checkpoint_colors, checkpoint_order

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


def render() -> None:
    ws = state.workspace()
    with st.sidebar:
        st.markdown("**Workspace**")
        st.markdown(chips(ws.names()), unsafe_allow_html=True)
        d = ws.data
        st.caption(f"forget {len(d.forget)} · retain {len(d.retain)} · holdout {len(d.holdout)} items")
        st.caption(f"Results store: `{ws.store_path}`")
