"""Prompt attribution (methods.md section 2.1-2.2): which prompt tokens carry each model's answer.

unPact's finding is that unlearning mostly breaks the model's *focus on the keywords* of a prompt while the
knowledge stays reachable. We measure focus per prompt token with two methods, for every checkpoint on the SAME
(prompt, target) pairs so the vectors are comparable token by token:

- leave-one-out (LOO): C_i = LP(x, y) - LP(x without token i, y), LP = mean answer-token log-prob. All n+1
  variants of ALL prompts go through `score_encoded` together: one length-sorted batched call per model.
- integrated gradients (captum LayerIntegratedGradients over model.get_input_embeddings(), Gauss-Legendre steps,
  adaptive per prompt: 32 steps, doubled up to 128 for prompts whose completeness error exceeds 1%), target = SUM of
  answer-token log-probs, baseline = the pad token's embedding (or zero) at prompt positions only: answer,
  padding and special tokens keep their real embedding, so their attribution is exactly 0 and completeness
  (sum of attributions = F(x) - F(baseline)) is a statement about the prompt alone. Prompts are batched with
  right padding and an attention mask; captum's internal_batch_size bounds prompts x steps per pass.

Key tokens are chosen under the ORIGINAL model (top-k by C, or the item's keywords) and then scored for every
model: KeyShare = sum of positive C over key tokens / sum |C|. On retain prompts a drop of the attribution mass
over all tokens (mass ratio < 1) is collateral damage.
"""

from __future__ import annotations

from unlearn_core.analyses.attribution.compute import attribute_model, compute_attribution
from unlearn_core.analyses.attribution.methods import (
    adaptive_integrated_gradients,
    answer_logprob_sum,
    integrated_gradients,
    key_share,
    keyword_mask,
    leave_one_out,
    prompt_layout,
    romberg_integrated_gradients,
)
from unlearn_core.analyses.attribution.result import (
    METHODS,
    TARGETS,
    AttributionConfig,
    AttributionResult,
    ItemAttribution,
)
from unlearn_core.analyses.spec import AnalysisSpec, Scope

__all__ = ["METHODS", "SPEC", "TARGETS", "AttributionConfig", "AttributionResult", "ItemAttribution",
           "adaptive_integrated_gradients", "answer_logprob_sum", "attribute_model", "compute_attribution",
           "integrated_gradients", "key_share", "keyword_mask", "leave_one_out", "prompt_layout",
           "romberg_integrated_gradients"]

# Registry entry 'attribution' (keyword-emphasis recovery is the separate 'keyword_recovery').
def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.attribution.plots import plot_key_share, plot_token_heatmap

    it = r.items[0]
    model = r.models[1] if len(r.models) > 1 else r.models[0]
    return {"attribution_key_share": plot_key_share(r, method=r.methods[0]),
            "attribution_tokens": plot_token_heatmap(r, it.item, model, it.split, r.methods[0])}


SPEC = AnalysisSpec(
    name="attribution", title="Prompt attribution (keyword focus)", default_config=AttributionConfig,
    compute=compute_attribution,
    tables=lambda r: {"attribution_summary": r.summary_frame(), "attribution_items": r.items_frame(),
                      "attribution_tokens": r.to_frame()},
    scores=lambda r, name: r.scores(name),
    page_title="Attribution",
    icon=":material/highlight:",
    plots=_plots,
    cost_rank=13,
    scope=Scope("which prompt tokens drive each checkpoint's answer",
                "whether a forgotten answer is still stored (it reads the output only)"),
)
