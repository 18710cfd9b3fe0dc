"""Unlearning audit dashboard: `streamlit run app.py`.

Opens on the demo lab (built on first start, then cached); UNLEARN_AUDIT_LAB_CONFIG (default "default") and
UNLEARN_AUDIT_LAB_DIR point it at another lab, UNLEARN_AUDIT_STORE at another results store. Nothing heavy is
imported here: models load when a page needs them. Pages are listed in views/_shared/nav.py.
The page scripts live in views/, not pages/: for a folder named pages/ beside the main script Streamlit runs its
old multipage mode until st.navigation has run once in the process, so the first visitor to open /verdict by its URL
got the bare page script (raw file names in the sidebar, no stylesheet, no workspace sidebar).
Bound to 127.0.0.1 (.streamlit/config.toml); on any other address it serves nothing unless UNLEARN_AUDIT_ROOT
confines typed paths (unlearn_core.checkpoints.guard).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from views._shared import nav

ROOT = Path(__file__).resolve().parent

st.set_page_config(page_title="Unlearning audit", page_icon=":material/policy:", layout="wide")
css = ROOT / "assets" / "style.css"
if css.exists():
    st.html(f"<style>{css.read_text()}</style>")

from unlearn_core.checkpoints.guard import PathOutsideRoot, check_serving, workspace_root  # noqa: E402 - no torch import

try:
    check_serving(st.get_option("server.address"), workspace_root())
except PathOutsideRoot as e:
    st.error(f"Not serving: {e}")
    st.stop()

pages = [st.Page(file, title=title, icon=icon, default=i == 0) for i, (file, title, icon) in enumerate(nav.available())]
current = st.navigation(pages)

from views._shared import sidebar, state  # noqa: E402 - imports torch (via the core): after the page config

state.ensure_lab()
sidebar.render()
if restore_failed := st.session_state.pop("flash_warning", None):  # a ?ws= link whose workspace is gone
    st.warning(restore_failed, icon=":material/link_off:")
current.run()
