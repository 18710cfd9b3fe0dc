"""One page layout for every registry analysis: settings, Run (progress + Stop), charts and tables with exports.

A page file is then a few lines: `render("patching", plots=...)`; its title, icon and scope line come from the
analysis's SPEC (analyses.registry).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, fields, is_dataclass, replace

import pandas as pd
import streamlit as st

from views._shared import cost, export, sidebar, state


def _analysis(name: str):
    from unlearn_core.analyses.registry import get_spec

    return get_spec(name)


def _is_wide(fig) -> bool:
    """A figure with side-by-side panels (a second x axis) needs the page's full width to stay legible."""
    layout = getattr(fig, "layout", None)
    return layout is not None and any(k.startswith("xaxis") and k != "xaxis" for k in layout.to_plotly_json())


def _rows(figures: list) -> list[list[tuple[int, object]]]:
    """Two figures per row, except a wide one, which gets a row to itself (the figure index stays its key)."""
    rows, pending = [], []
    for i, fig in enumerate(figures):
        if _is_wide(fig):
            if pending:
                rows.append(pending)
                pending = []
            rows.append([(i, fig)])
            continue
        pending.append((i, fig))
        if len(pending) == 2:
            rows.append(pending)
            pending = []
    return rows + ([pending] if pending else [])


def _parse_scalar(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _field_widget(page: str, f, default, container):
    """One widget for one config field, chosen by the default's type; returns the value (the dataclass validates)."""
    key, label = f"{page}_cfg_{f.name}", f.name.replace("_", " ")
    ann = str(f.type)
    if isinstance(default, bool):
        return container.checkbox(label, default, key=key)
    if isinstance(default, int):
        return int(container.number_input(label, value=default, step=1, key=key))
    if isinstance(default, float):
        return float(container.number_input(label, value=default, format="%g", key=key))
    if isinstance(default, str) and f.metadata.get("choices"):  # a closed set the config declares: pick, not type
        choices = list(f.metadata["choices"])
        return container.selectbox(label, choices, index=choices.index(default), key=key)
    if isinstance(default, str):
        return container.text_input(label, default, key=key)
    if isinstance(default, tuple) or (default is None and "tuple" in ann):
        text = container.text_input(f"{label} (comma-separated{'; empty = auto' if default is None else ''})",
                                    ", ".join(map(str, default or ())), key=key)
        items = tuple(_parse_scalar(t.strip()) for t in text.split(",") if t.strip())
        if default and all(isinstance(x, float) for x in default):  # "1" in a float grid stays 1.0 (same hash)
            items = tuple(float(x) if isinstance(x, int) else x for x in items)
        return None if default is None and not items else items
    if default is None:
        text = container.text_input(f"{label} (empty = auto)", "", key=key)
        return None if not text.strip() else _parse_scalar(text.strip())
    if is_dataclass(default):  # nested settings (e.g. the SAE's): JSON
        text = container.text_area(f"{label} (JSON)", json.dumps(asdict(default), indent=1), key=key, height=150)
        return type(default)(**json.loads(text))
    return default


def _confined(values: dict) -> dict:
    """Path settings (e.g. sae_path) resolved inside the workspace root; PathOutsideRoot (a ValueError) if not."""
    from unlearn_core.checkpoints.guard import folder_inside, workspace_root

    root = workspace_root()
    if root is None:  # a local single user: settings stay as typed (they are part of the result's key)
        return values
    return {k: str(folder_inside(v, root, k.replace("_", " "))) if k.endswith(("_path", "_dir")) and isinstance(v, str)
            and v.strip() else v for k, v in values.items()}


def _config(analysis, page: str, main: tuple[str, ...] = ()):
    """The analysis' config as widgets: the `main` fields on the page, the rest under "More settings"."""
    default = analysis.default_config()
    values = {}
    flds = [f for f in fields(default) if f.init]
    shown = [f for f in flds if f.name in main]
    rest = [f for f in flds if f.name not in main]
    try:
        if shown:
            cols = st.columns(min(len(shown), 4))
            for i, f in enumerate(shown):
                values[f.name] = _field_widget(page, f, getattr(default, f.name), cols[i % len(cols)])
        with st.expander("More settings", icon=":material/tune:"):
            cols = st.columns(3)
            for i, f in enumerate(rest):
                values[f.name] = _field_widget(page, f, getattr(default, f.name), cols[i % 3])
        return replace(default, **_confined(values))
    except (ValueError, TypeError, RecursionError) as e:  # RecursionError: JSON settings nested too deep
        st.error(f"Invalid settings, using the defaults: {e}")
        return default


def render(name: str, plots: Callable[[object], list] | None = None, intro: str = "",
           main: tuple[str, ...] = ()) -> None:
    """`plots(result)` may create widgets (pickers) before returning its figures; `main`: settings shown up front."""
    page = name
    export.start_page(page)
    ws = state.workspace()
    # the heading repeats the navigation label, so the reader sees where they clicked
    try:
        analysis = _analysis(name)
    except Exception as e:  # noqa: BLE001 - a module still in development must not take the dashboard down
        st.error(f"This analysis is not available in this version: {type(e).__name__}: {e}")
        st.stop()
    heading = analysis.page[1]
    st.title(heading)
    if analysis.title.lower() != heading.lower():
        st.markdown(f"**{analysis.title}**")
    st.markdown(sidebar.chips(ws.names()), unsafe_allow_html=True)
    if intro:
        st.caption(intro)
    if analysis.scope_line():
        st.markdown(analysis.scope_line())  # what this probe can and cannot tell, before any number
    bundle_slot = st.container()
    cfg = _config(analysis, page, main)
    if state.was_stopped(name):
        st.warning("Stopped. Nothing was written to the results store; run again to compute it.")
    result, _job = state.stored_result(name, cfg, ws)
    if result is None:
        prompt = st.empty()
        with prompt.container():
            st.info(f"{analysis.title} for these {len(ws.names())} checkpoints and settings is not in the results "
                    "store yet.")
            first = analysis.title.split()[0]
            label = analysis.title if first.isupper() else analysis.title[0].lower() + analysis.title[1:]
            run = st.button(f"Run {label}", type="primary", key=f"run_{name}",
                            icon=":material/play_arrow:")
            cost.render([name], ws, {name: cfg})
        last = st.session_state.get(f"_last_result_{name}")
        if not run:
            # changed settings do not blank the page: the last result of this workspace stays, marked stale
            if last is None or last[0] != (ws.key, ws.data.hash):
                st.stop()
            result = last[1]
            st.warning("Stale: the charts below are the previous result (other settings). Run to compute these "
                       "settings.", icon=":material/history:")
        else:
            prompt.empty()
            result, seconds, _ = state.run_with_progress(analysis, cfg, ws)
            st.success(f"Computed in {seconds:.1f} s and saved to the results store.", icon=":material/check:")
    else:
        st.caption(f"Served from the results store `{sidebar.shown_path(ws.store_path)}`.")
    if not (result is not None and st.session_state.get(f"_last_result_{name}", (None, None))[1] is result):
        st.session_state[f"_last_result_{name}"] = ((ws.key, ws.data.hash), result)

    if plots is not None:
        try:
            figures = plots(result)
        except Exception as e:  # noqa: BLE001 - show the tables even when a chart cannot be drawn
            st.warning(f"Charts unavailable: {type(e).__name__}: {e}")
            figures = []
        for row in _rows(figures):
            cols = st.columns(len(row))
            for col, (i, fig) in zip(cols, row, strict=True):
                with col:
                    export.chart(fig, f"{name}_{i}", page)
    for i, (tname, df) in enumerate(analysis.tables(result).items()):
        if not isinstance(df, pd.DataFrame):
            continue
        title = tname.replace("_", " ")
        with st.expander(f"Table: {title} ({len(df)} rows)", expanded=i == 0):
            export.table(df, title, f"{name}_{tname}", page, hide_index=True, width="stretch")
    with bundle_slot:
        export.bundle_button(page, "Download all charts and tables (zip)")
