"""The dashboard's pages, in one list: adding a view is one line here (app.py builds st.navigation from it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (file relative to the app, title, icon, analysis module the page needs or None)
PAGES = [
    ("views/workspace.py", "Workspace", ":material/folder_open:", None),
    ("views/verdict.py", "Suppression vs deletion", ":material/balance:", None),
    ("views/scorecard.py", "Behavioural scorecard", ":material/scoreboard:", None),
    ("views/drilldown.py", "Item drill-down", ":material/table_rows:", None),
    ("views/dynamics.py", "Training dynamics", ":material/timeline:", None),
    ("views/attribution.py", "Attribution", ":material/highlight:", "unlearn_core.analyses.attribution"),
    ("views/keyword_recovery.py", "Keyword recovery", ":material/key:", "unlearn_core.analyses.keyword_emphasis"),
    ("views/decodability.py", "Decodability probe", ":material/manage_search:", "unlearn_core.analyses.decodability"),
    ("views/concept_vectors.py", "Concept vectors", ":material/hub:", "unlearn_core.analyses.concept_vectors"),
    ("views/patching.py", "Activation patching", ":material/swap_horiz:", "unlearn_core.analyses.patching"),
    ("views/representation.py", "Representations", ":material/layers:", "unlearn_core.analyses.representation"),
    ("views/quantization.py", "Quantization", ":material/compress:", "unlearn_core.analyses.quantization"),
    ("views/update_revert.py", "Update revert", ":material/undo:", "unlearn_core.analyses.update_revert"),
    ("views/relearning.py", "Relearning", ":material/replay:", "unlearn_core.analyses.relearning"),
    ("views/perturbation.py", "Perturbation", ":material/grain:", "unlearn_core.analyses.perturbation"),
    ("views/extraction.py", "Extraction", ":material/travel_explore:", "unlearn_core.analyses.extraction"),
    ("views/sae_restoration.py", "SAE restoration", ":material/restore:", "unlearn_core.analyses.sae_restoration"),
]


def available() -> list[tuple[str, str, str]]:
    """(file, title, icon) of pages whose file exists and whose analysis module is importable (nothing imported)."""
    out = []
    for file, title, icon, module in PAGES:
        if not (ROOT / file).exists():
            continue
        if module is not None and importlib.util.find_spec(module) is None:
            continue
        out.append((file, title, icon))
    return out
