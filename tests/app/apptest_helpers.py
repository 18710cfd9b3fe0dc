"""What a person sees on an AppTest page, as searchable text and tables."""

from __future__ import annotations


def texts(at) -> str:
    """Everything textual on the page (markdown, captions, alerts, titles), one string to search."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def frame(at, *columns: str):
    """The first table shown whose columns include `columns` (AppTest does not expose st.dataframe keys)."""
    for df in at.dataframe:
        if set(columns) <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no table with columns {columns}; tables: {[list(d.value.columns) for d in at.dataframe]}")


def no_exception(at) -> None:
    """No exception, and no chart the page had to replace by a "Charts unavailable" warning."""
    assert not at.exception, [e.value for e in at.exception]
    hidden = [str(w.value) for w in at.warning if str(w.value).startswith("Charts unavailable")]
    assert not hidden, hidden
