"""One page layout for every registry analysis: settings, Run (progress + Stop), charts and tables with exports.

A page file is then a few lines: `render("patching", "unlearn_core.analyses.patching", plots=...)`. The analysis
comes from unlearn_core.audit.REGISTRY when registered there, else from its module's `analysis_spec()`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict

import pandas as pd
import streamlit as st

from pages._shared import export, nav, sidebar, state


def _analysis(name: str, module: str):
    from unlearn_core.audit import REGISTRY

    if name in REGISTRY:
        return REGISTRY[name]()
    return importlib.import_module(module).analysis_spec()


def _config(analysis, page: str):
    """Default config, editable as JSON (validated by the config dataclass itself)."""
    default = analysis.default_config()
    with st.expander("Settings", icon=":material/tune:"):
        text = st.text_area("Configuration (JSON; fields of the analysis' config)", json.dumps(asdict(default),
                            indent=2, default=str), height=180, key=f"{page}_config")
        try:
            values = json.loads(text)
            cfg = type(default)(**{k: tuple(v) if isinstance(getattr(default, k, None), tuple) else v
                                   for k, v in values.items()})
        except (ValueError, TypeError) as e:
            st.error(f"Invalid configuration, using the defaults: {e}")
            cfg = default
    return cfg


def render(name: str, module: str, plots: Callable[[object], list] | None = None, intro: str = "") -> None:
    page = name
    export.start_page(page)
    ws = state.workspace()
    # the heading repeats the navigation label, so the reader sees where they clicked
    heading = next((t for _, t, _, m in nav.PAGES if m == module), name.replace("_", " ").capitalize())
    st.title(heading)
    try:
        analysis = _analysis(name, module)
    except Exception as e:  # noqa: BLE001 - a module still in development must not take the dashboard down
        st.error(f"This analysis is not available in this version: {type(e).__name__}: {e}")
        st.stop()
    if analysis.title.lower() != heading.lower():
        st.markdown(f"**{analysis.title}**")
    st.markdown(sidebar.chips(ws.names()), unsafe_allow_html=True)
    if intro:
        st.caption(intro)
    bundle_slot = st.container()
    cfg = _config(analysis, page)
    if state.was_stopped(name):
        st.warning("Stopped. Nothing was written to the results store; run again to compute it.")
    result, key = state.stored_result(name, cfg, ws)
    if result is None:
        prompt = st.empty()
        with prompt.container():
            st.info(f"{analysis.title} for these {len(ws.names())} checkpoints and settings is not in the results "
                    "store yet.")
            run = st.button(f"Run {analysis.title.lower()}", type="primary", key=f"run_{name}",
                            icon=":material/play_arrow:")
        if not run:
            st.stop()
        prompt.empty()
        result, seconds, _ = state.run_with_progress(analysis, cfg, ws)
        st.success(f"Computed in {seconds:.1f} s and saved to the results store.", icon=":material/check:")
    else:
        st.caption(f"Served from the results store `{ws.store_path}`.")

    if plots is not None:
        try:
            figures = plots(result)
        except Exception as e:  # noqa: BLE001 - show the tables even when a chart cannot be drawn
            st.warning(f"Charts unavailable: {type(e).__name__}: {e}")
            figures = []
        for i in range(0, len(figures), 2):
            cols = st.columns(2)
            for j, (col, fig) in enumerate(zip(cols, figures[i:i + 2])):
                with col:
                    export.chart(fig, f"{name}_{i + j}", page)
    for i, (tname, df) in enumerate(analysis.tables(result).items()):
        if not isinstance(df, pd.DataFrame):
            continue
        title = tname.replace("_", " ")
        with st.expander(f"Table: {title} ({len(df)} rows)", expanded=i == 0):
            export.table(df, title, f"{name}_{tname}", page, hide_index=True, width="stretch")
    with bundle_slot:
        export.bundle_button(page, "Download all charts and tables (zip)")
