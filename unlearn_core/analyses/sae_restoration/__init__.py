"""SAE restoration audit (methods.md section 4): are the forgotten facts' features still usable inside?

An SAE trained on the ORIGINAL model's residual stream at layer l gives a feature basis. Each unlearned checkpoint
is steered at layer l on forget prompts with a forward hook, for a feature set E:

    inject (needs the original):  h' = h_u + W_dec[E]^T (alpha * (z_o,E - z_u,E))
    scale  (self-contained):      h' = h_u + W_dec[E]^T (alpha * z_u,E)      (z_u,E -> (1 + alpha) z_u,E)

(z = SAE encoder activations of the original (o) / unlearned (u) hidden state at the same token; the additive
change is computed as decode(dz) - decode(0), so any SAE architecture's decoder scaling is respected), and

    restoration = clip((F(steered) - F(plain)) / (F(original) - F(plain)), 0, 1),  F = mean p~ (also accuracy)

Feature sets:
  fact     per item, its own expert features: the m features whose mean activation over that item's answer span
           most exceeds their mean over all items (original). The paper's experts are class-specific; a memorised
           fact is the class here. m = 2 x the SAE's L0 (TopK k=32 -> 64): the support of a 2-token answer span.
  concept  one set for the whole forget set (methods.md step 2): top-m by mean forget minus mean retain activation.
  random   per item, m random live features outside its fact set (the control: must restore much less).
The headline score is the fact-set injection, max over the alpha grid (or at `headline_alpha`), reported with the
retain-set side effect of the same steering (an edit that breaks everything proves nothing).

A checkpoint that only suppressed the answer keeps the machinery that reads these features, so putting the
original's feature values back restores the answer; a model that never had the knowledge gains nothing.

Layer choice (reported in the result): residual stream = OUTPUT of decoder block l (hooked, not HF hidden_states,
whose last entry has the final norm applied). Default l = min(n_layers - 1, round(2/3 * n_layers)). A checkpoint
can only be restored at a layer where its states differ from the original's: in the demo lab's `suppressed_head`
everything below the last block is byte-identical to the original (z_o = z_u, so injection there is a no-op), and
for the lab's 3-4 block models the 2/3 rule lands on the last block's output, where the change is visible. For
other models run `layer_sweep` and read the restoration per layer.

Read the layer sweep, not only the default layer: at the last block an injection is close to an edit of the logits,
and any checkpoint fine-tuned from the original can read the original's answer features there (measurements per
lab and layer: benchmarks/MEASUREMENTS.md).

Verdict evidence "sae_restoration" (control "reference"): per forget item, the answer p~ plain and under fact-feature
injection at the alpha of each model's own headline restoration (the same max-over-alpha rule for every model,
the retain-only reference included), plus the original's plain p~ (the denominator). Injection copies the
ORIGINAL's feature values, so any model that can read them "recovers": only the retain-only reference run through
the same injection is a control, and without one the number does not count.
"""
from __future__ import annotations

from unlearn_core.analyses.sae_restoration.compute import (
    compute_restoration,
    layer_sweep,
    resolve_restoration,
    restoration_needs,
    sweep_configs,
    sweep_frame,
)
from unlearn_core.analyses.sae_restoration.result import (
    EVIDENCE_KEY,
    FEATURE_SETS,
    VARIANTS,
    RestorationConfig,
    RestorationResult,
    default_layer,
    default_n_expert,
    setting,
)
from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope

__all__ = ["EVIDENCE_KEY", "FEATURE_SETS", "SPEC", "VARIANTS", "RestorationConfig", "RestorationResult",
           "compute_restoration", "default_layer", "default_n_expert", "layer_sweep", "resolve_restoration", "setting",
           "sweep_configs", "sweep_frame"]

def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.sae_restoration.plots import plot_dose_response, plot_expert_activation

    return {"sae_dose_response": plot_dose_response(r), "sae_expert_features": plot_expert_activation(r)}


SPEC = AnalysisSpec(
    name="sae_restoration", title="SAE restoration", default_config=RestorationConfig, compute=compute_restoration,
    tables=lambda r: {"restoration_curves": r.to_frame(), "restoration_summary": r.summary_frame(),
                      "restoration_features": r.features_frame(),
                      "restoration_fact_features": r.fact_features_frame()},
    scores=lambda r, name: r.scores(name),
    evidence=(Evidence(EVIDENCE_KEY, "restored by injecting the original's fact features (SAE)", "reference",
                       axis="edit_of_original", counted=False,
                       why_not="injecting the original's late-layer SAE features restores a model fine-tuned from "
                       "the same base without the forget set about as much as a planted suppression (raw 0.80 vs "
                       "0.38 on the default lab): it measures 'can read the original's features', not 'still "
                       "stores the answer'"),),
    evidence_items=lambda r: r.evidence_items(),
    resolve=resolve_restoration,
    needs=restoration_needs,
    page_title="SAE restoration",
    icon=":material/restore:",
    plots=_plots,
    cost_rank=12,
    scope=Scope("whether steering the original's SAE features back in restores the answers",
                "'still stores the answer': a model that can read the features is restored too",
                "SAE features (injected)"),
)
