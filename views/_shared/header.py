"""The opening every page shares, so the pages read alike and a change to it is made once."""

from __future__ import annotations

import streamlit as st

from views._shared import export, sidebar, state


def page_header(page: str, title: str, caption: str = ""):
    """(workspace, export-bundle slot) after the page's title, the checkpoint chips and its reading guide; the
    previous run's charts and tables of this page are forgotten first (export.start_page)."""
    export.start_page(page)
    ws = state.workspace()
    st.title(title)
    st.markdown(sidebar.chips(ws.names()), unsafe_allow_html=True)
    if caption:
        st.caption(caption)
    return ws, st.container()
