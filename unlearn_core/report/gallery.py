"""Every chart an audit can draw, from a set of analysis results and the verdict, each with its page's default choices.

Why: one list to export all figures of an audit at a paper size, and to check every one of them at every size
preset (no title or label outside the canvas, no text under 7 pt) instead of the few a test happens to open. The
charts of each analysis are its SPEC's `plots`; the verdict's are the headline figures (evidence.plots).
"""

from __future__ import annotations

from unlearn_core.analyses.registry import ANALYSES, get_spec


def chart_gallery(results: dict[str, object], verdict=None, validity=None) -> dict[str, object]:
    """name -> plotly figure for every chart the given results (analysis name -> result) and verdict can draw."""
    from unlearn_core.evidence.plots import plot_evidence_matrix, plot_probe_validity, plot_verdict_headline

    out: dict[str, object] = {}
    if verdict is not None:
        out["verdict_headline"] = plot_verdict_headline(verdict)
        out["verdict_evidence"] = plot_evidence_matrix(verdict)
    if validity is not None and not validity.empty:
        out["verdict_probe_validity"] = plot_probe_validity(validity)
    for name, result in results.items():
        spec = get_spec(name) if name in ANALYSES else None
        if spec is not None and spec.plots is not None:
            out.update(spec.plots(result))
    return out
