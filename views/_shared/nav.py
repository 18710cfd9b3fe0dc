"""The dashboard's pages: the fixed ones here, then one per registered analysis in registry order, read from its
SPEC (analyses.spec: page file views/<name>.py, title, icon). app.py builds st.navigation from `available()`."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (file relative to the app, title, icon) of the pages that are not one analysis's
FIXED = [
    ("views/workspace.py", "Workspace", ":material/folder_open:"),
    ("views/verdict.py", "Suppression vs deletion", ":material/balance:"),
    ("views/drilldown.py", "Item drill-down", ":material/table_rows:"),
    ("views/dynamics.py", "Training dynamics", ":material/timeline:"),
    ("views/compare.py", "Compare audits", ":material/compare_arrows:"),
]


def pages() -> list[tuple[str, str, str]]:
    """(file, title, icon) of every page: the fixed ones, the scorecard right after the verdict, then the probes."""
    from unlearn_core.analyses.registry import specs

    analyses = [s.page for s in specs()]
    return [*FIXED[:2], *analyses[:1], *FIXED[2:], *analyses[1:]]


def available() -> list[tuple[str, str, str]]:
    """The pages whose file exists."""
    return [p for p in pages() if (ROOT / p[0]).exists()]


def title(name: str) -> str:
    """An analysis page's heading (its navigation title)."""
    from unlearn_core.analyses.registry import get_spec

    return get_spec(name).page[1]
