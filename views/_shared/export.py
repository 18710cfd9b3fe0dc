"""Charts and tables with their download buttons, and a per-page "download all" zip.

Figure bytes are produced lazily: st.download_button gets a callable, so kaleido (2-3 s per plotly figure) runs only
when somebody clicks, never on every rerun. Every chart and table shown through here is remembered for the page's
bundle, which renders everything in one go on its own click.
"""

from __future__ import annotations

import streamlit as st

from unlearn_core.report.export import bundle_zip, figure_bytes, figures_bytes, safe_filename, table_csv, table_latex

PRESET_KEY = "figure_preset"  # the sidebar's "Figure size" choice: every chart download uses it


def preset() -> str | None:
    """The chosen paper/slide size preset (unlearn_core.viz.presets), None for the screen size."""
    key = st.session_state.get(PRESET_KEY, "two_columns")
    return None if key == "screen" else key


MIME = {"svg": "image/svg+xml", "pdf": "application/pdf", "png": "image/png", "csv": "text/csv",
        "tex": "application/x-tex", "zip": "application/zip"}
_BUNDLE = "_bundle_items"


def _title(fig) -> str:
    try:
        text = fig.layout.title.text  # plotly
    except AttributeError:
        text = getattr(fig, "title", None)  # altair
        text = getattr(text, "text", text)
    return str(text or "chart")


def _register(page: str, kind: str, name: str, obj, extra: str = "") -> None:
    st.session_state.setdefault(_BUNDLE, {}).setdefault(page, {})[name] = (kind, obj, extra)


def start_page(page: str) -> None:
    """Forget the previous run's charts/tables of this page (call at the top of a page)."""
    st.session_state.setdefault(_BUNDLE, {})[page] = {}


def chart(fig, key: str, page: str, *, height: int | None = None) -> None:
    """Show a plotly (or altair) chart with SVG / PDF / PNG downloads rendered on click."""
    title = _title(fig)
    if hasattr(fig, "to_plotly_json"):
        # theme=None: show exactly the figure that is exported (our template), not Streamlit's restyling
        st.plotly_chart(fig, width="stretch", key=f"chart_{key}", height=height or "content", theme=None,
                        config={"displaylogo": False, "toImageButtonOptions": {"filename": safe_filename(title)}})
    else:
        st.altair_chart(fig, width="stretch", key=f"chart_{key}")
    _register(page, "figure", title, fig)
    row = st.container(horizontal=True, gap="small")
    for fmt in ("svg", "pdf", "png"):
        row.download_button(
            fmt.upper(), data=lambda fmt=fmt, p=preset(): figure_bytes(fig, fmt, preset=p),
            file_name=f"{safe_filename(title)}.{fmt}",
            mime=MIME[fmt], key=f"dl_{key}_{fmt}", on_click="ignore", icon=":material/download:",
            help=f"Download '{title}' as {fmt.upper()}", type="tertiary",
        )


def table(df, title: str, key: str, page: str, *, caption: str = "", show: bool = True, **dataframe_kwargs) -> None:
    """Show a table with CSV and LaTeX downloads (cheap, so produced eagerly)."""
    if show:
        st.dataframe(df, key=f"table_{key}", **dataframe_kwargs)
    _register(page, "table", title, df, caption)
    row = st.container(horizontal=True, gap="small")
    name = safe_filename(title)
    row.download_button("CSV", table_csv(df), f"{name}.csv", MIME["csv"], key=f"dl_{key}_csv",
                            on_click="ignore", icon=":material/download:", type="tertiary")
    row.download_button("LaTeX", table_latex(df, caption or title, f"tab:{name}"), f"{name}.tex", MIME["tex"],
                            key=f"dl_{key}_tex", on_click="ignore", icon=":material/download:", type="tertiary")


def _bundle_bytes(items: dict, formats: tuple[str, ...], size: str | None = None,
                  extra: dict[str, bytes] | None = None) -> bytes:
    files: dict[str, bytes] = dict(extra or {})
    jobs, paths = [], []
    for name, (kind, obj, caption) in items.items():
        base = safe_filename(name)
        if kind == "figure":
            for fmt in formats:
                jobs.append((obj, fmt))
                paths.append(f"figures/{base}.{fmt}")
        else:
            files[f"tables/{base}.csv"] = table_csv(obj)
            files[f"tables/{base}.tex"] = table_latex(obj, caption or name, f"tab:{base}")
    files.update(zip(paths, figures_bytes(jobs, preset=size), strict=True))  # one browser session for all charts
    return bundle_zip(files)


def provenance_bytes(size: str | None) -> bytes:
    """How the zip's numbers were made (tool and commit, libraries, device/dtype, time, prompt format) and the
    workspace file that reproduces them (run.saved: load it on the workspace page)."""
    import json

    from unlearn_core.run.provenance import provenance
    from views._shared import state

    ws = state.workspace()
    record = {**provenance(None, ws.data, None, ws.spec), "size_preset": size or "screen",
              "data_hash": ws.data.hash, "workspace": ws.record()}
    record["workspace"]["prompt_format"].pop("chat_template", None)  # kilobytes; its hash is in prompt_format
    return json.dumps(record, indent=2, default=str).encode()


def bundle_button(page: str, label: str = "Download all (zip)", formats: tuple[str, ...] = ("svg", "pdf", "png")):
    """One zip with every chart (each format) and table shown on this page; rendered on click."""
    items = dict(st.session_state.get(_BUNDLE, {}).get(page, {}))
    n_fig = sum(kind == "figure" for kind, _, _ in items.values())
    st.download_button(
        label, data=lambda p=preset(): _bundle_bytes(items, formats, p, {"provenance.json": provenance_bytes(p)}),
        file_name=f"{safe_filename(page)}_export.zip",
        mime=MIME["zip"], key=f"dl_bundle_{page}", on_click="ignore", icon=":material/folder_zip:",
        disabled=not items,
        help=f"{n_fig} charts as {'/'.join(f.upper() for f in formats)} and {len(items) - n_fig} tables as "
             f"CSV/LaTeX (charts are rendered when you click, in one browser session)",
    )
