"""Concept-vector audit (methods.md section 3, after "Intrinsic Evaluation of Unlearning Using Parametric
Knowledge Traces"): did unlearning change the MLP columns that write the forgotten concept, or only hide them?

1. Locate, in the ORIGINAL: score every MLP output column by how high the concept's tokens rank in its vocabulary
   projection (concept_locate), then validate the best candidates causally: zeroing (or noising) the column must
   drop the concept's QA scores much more than unrelated QA scores (concept_ablation, all candidates in shared
   batches). If the paper's strict filter passes fewer than `min_vectors` columns (typical of tiny models, where
   knowledge is spread over many neurons), the list is filled with the columns of largest causal effect and
   marked `selected_by = "top_effect"`, never silently.
2. Parametric change of the located columns in every other checkpoint, against random columns of the same layers,
   plus ||dW|| / ||W|| of every parameter (concept_change).
3. Ablation oracle: the ORIGINAL with every located column zeroed, scored on forget and retain, next to what each
   checkpoint actually does. Large oracle drop + unlearned columns at cosine ~1 = the concept is suppressed
   elsewhere, not deleted where it lives.
"""

from __future__ import annotations

from unlearn_core.analyses.concept_vectors.change import per_layer_change
from unlearn_core.analyses.concept_vectors.compute import compute_concept_vectors
from unlearn_core.analyses.concept_vectors.result import ConceptVectorsConfig, ConceptVectorsResult
from unlearn_core.analyses.spec import AnalysisSpec, Scope

__all__ = ["SPEC", "ConceptVectorsConfig", "ConceptVectorsResult", "compute_concept_vectors"]


# No verdict evidence: concept-vector cosine is parametric similarity, not recoverability, and a retain-only model
# trained separately has unaligned columns (cosine ~0.7 by construction), which would read as "retained".
def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.concept_vectors import plots as pcv

    out = {"concept_vector_change": pcv.plot_vector_change(r), "concept_layer_weights": pcv.plot_layer_weight_change(r),
           "concept_ablation": pcv.plot_ablation(r)}
    if r.concepts:
        out["concept_locate"] = pcv.plot_locate_scores(r, r.concepts[0])
        loc = r.located()
        if not loc.empty:
            out["concept_vocab"] = pcv.plot_vocab_projection(r, int(loc.iloc[0]["layer"]), int(loc.iloc[0]["neuron"]))
    return out


SPEC = AnalysisSpec(
    name="concept_vectors", title="Concept vectors", default_config=ConceptVectorsConfig,
    compute=compute_concept_vectors,
    tables=lambda r: {"concept_vectors_summary": r.to_frame(), "concept_vectors_candidates": r.candidates,
                      "concept_vectors_change": r.change, "concept_vectors_ablation": r.ablation,
                      "concept_vectors_concept_ablation": r.concept_ablation,
                      "concept_vectors_layer_change": per_layer_change(r.weight_change)},
    scores=lambda r, name: r.scores(name),
    page_title="Concept vectors",
    icon=":material/hub:",
    plots=_plots,
    cost_rank=6,
    scope=Scope("whether unlearning changed the MLP vectors that write the concept",
                "whether the answer is recoverable (shown, not counted as verdict evidence)",
                "weights (to locate the concept vectors)"),
)
