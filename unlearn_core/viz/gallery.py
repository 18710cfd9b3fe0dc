"""Every chart the dashboard draws, from a set of analysis results, with each page's default choices.

Why: one list to export all figures of an audit at a paper size, and to check every one of them at every size
preset (no title or label outside the canvas, no text under 7 pt) instead of the few a test happens to open.
"""

from __future__ import annotations

from collections.abc import Callable

import plotly.graph_objects as go


def _scorecard(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_scorecard import plot_mia_auc, plot_model_metric, plot_roc, plot_split_metric

    summary, roc = r.to_frame(), r.roc_frame()
    out = {f"scorecard_{m}": plot_split_metric(summary, m) for m in ("acc", "p", "rougeL_recall", "truth_ratio")
           if f"forget_{m}" in summary.columns}
    out["scorecard_retain_ppl"] = plot_model_metric(summary, "retain_ppl", "Retain-set perplexity (lower is better)",
                                                    "perplexity", log_y=True)
    out["scorecard_mia_auc"] = plot_mia_auc(summary)
    if not roc.empty:
        out["scorecard_roc"] = plot_roc(roc, sorted(set(roc["metric"]))[0])
    return out


def _attribution(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_attribution import plot_key_share, plot_token_heatmap

    it = r.items[0]
    model = r.models[1] if len(r.models) > 1 else r.models[0]
    return {"attribution_key_share": plot_key_share(r, method=r.methods[0]),
            "attribution_tokens": plot_token_heatmap(r, it.item, model, it.split, r.methods[0])}


def _keyword(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_attribution import plot_keyword_recovery

    return {"keyword_recovery": plot_keyword_recovery(r, "p")}


def _decodability(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_decodability import plot_decodability_layers, plot_decodability_summary

    return {"decodability_layers": plot_decodability_layers(r, "forget_acc"),
            "decodability_summary": plot_decodability_summary(r)}


def _concept_vectors(r) -> dict[str, go.Figure]:
    from unlearn_core.viz import plot_concept_vectors as pcv

    out = {"concept_vector_change": pcv.plot_vector_change(r), "concept_layer_weights": pcv.plot_layer_weight_change(r),
           "concept_ablation": pcv.plot_ablation(r)}
    if r.concepts:
        out["concept_locate"] = pcv.plot_locate_scores(r, r.concepts[0])
        loc = r.located()
        if not loc.empty:
            out["concept_vocab"] = pcv.plot_vocab_projection(r, int(loc.iloc[0]["layer"]), int(loc.iloc[0]["neuron"]))
    return out


def _sae(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_restoration import plot_dose_response
    from unlearn_core.viz.plot_verdict import plot_expert_activation

    return {"sae_dose_response": plot_dose_response(r), "sae_expert_features": plot_expert_activation(r)}


def _patching(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_restoration import plot_patching

    return {"patching": plot_patching(r)}


def _quantization(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_robustness import plot_bucket_changes, plot_quantization

    return {"quantization": plot_quantization(r, "forget_acc"), "quantization_buckets": plot_bucket_changes(r)}


def _update_revert(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_robustness import plot_update_revert, plot_update_spectrum

    return {"update_revert": plot_update_revert(r), "update_revert_spectrum": plot_update_spectrum(r)}


def _relearning(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_robustness import plot_relearning

    return {"relearning": plot_relearning(r)}


def _representation(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_robustness import plot_cka, plot_logit_lens

    out = {"representation_cka": plot_cka(r)}
    if r.config.logit_lens:
        out["representation_logit_lens"] = plot_logit_lens(r, "forget", "top1_share")
    return out


def _perturbation(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_robustness import plot_perturbation

    return {"perturbation": plot_perturbation(r)}


def _extraction(r) -> dict[str, go.Figure]:
    from unlearn_core.viz.plot_robustness import plot_extraction

    return {"extraction": plot_extraction(r)}


CHARTS: dict[str, Callable[[object], dict[str, go.Figure]]] = {
    "scorecard": _scorecard, "attribution": _attribution, "keyword_recovery": _keyword,
    "decodability": _decodability, "concept_vectors": _concept_vectors, "sae_restoration": _sae,
    "patching": _patching, "quantization": _quantization, "update_revert": _update_revert,
    "relearning": _relearning,
    "representation": _representation, "perturbation": _perturbation, "extraction": _extraction,
}


def chart_gallery(results: dict[str, object], verdict=None, validity=None) -> dict[str, go.Figure]:
    """name -> figure for every chart the given results (analysis name -> result) and verdict can draw."""
    from unlearn_core.viz.plot_verdict import plot_evidence_matrix, plot_probe_validity, plot_verdict_headline

    out: dict[str, go.Figure] = {}
    if verdict is not None:
        out["verdict_headline"] = plot_verdict_headline(verdict)
        out["verdict_evidence"] = plot_evidence_matrix(verdict)
    if validity is not None and not validity.empty:
        out["verdict_probe_validity"] = plot_probe_validity(validity)
    for name, result in results.items():
        if name in CHARTS:
            out.update(CHARTS[name](result))
    return out
