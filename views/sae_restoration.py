"""SAE restoration: re-inject the forgotten concept's SAE features into each unlearned model (dose-response)."""

from __future__ import annotations

import streamlit as st

from views._shared import export, state
from views._shared.analysis_page import render

VARIANTS = {"inject": "inject the original's feature values", "scale": "scale the model's own features"}


def _sweep(result) -> list:
    """Restoration at every block output: each layer is an ordinary stored run (nothing is computed twice)."""
    from unlearn_core.analyses.sae_restoration import sweep_configs, sweep_frame
    from unlearn_core.analyses.sae_restoration.plots import plot_layer_sweep
    from unlearn_core.run.audit import get_analysis

    configs = sweep_configs(result.config, result.n_layers)
    found = [result if c.layer == result.layer else state.stored_result("sae_restoration", c)[0] for c in configs]
    missing = [c for c, r in zip(configs, found, strict=True) if r is None]
    with st.expander(f"Layer sweep: restoration at each of the {result.n_layers} block outputs",
                     expanded=not missing, icon=":material/stacked_line_chart:"):
        st.caption("A checkpoint can only be restored at a layer where its states differ from the original's: "
                   "one changed only in its top block reads 0 below it. Same settings, one SAE per layer.")
        if missing and st.button(f"Run the {len(missing)} missing layer(s)", key="sae_sweep_run",
                                 icon=":material/play_arrow:"):
            analysis = get_analysis("sae_restoration")
            for i, c in enumerate(missing):
                state.run_with_progress(analysis, c, label=f"layer {c.layer} ({i + 1}/{len(missing)})",
                                        part=f"_layer{c.layer}")
            found = [result if c.layer == result.layer else state.stored_result("sae_restoration", c)[0]
                     for c in configs]
            missing = [c for c, r in zip(configs, found, strict=True) if r is None]
        if missing:
            return []
        frame = sweep_frame(found)
        export.table(frame, "SAE restoration per layer", "sae_layer_sweep", "sae_restoration", hide_index=True,
                     width="stretch")
    return [plot_layer_sweep(frame)]


def plots(result) -> list:
    from unlearn_core.analyses.sae_restoration.plots import plot_dose_response, plot_expert_activation

    q = result.sae_quality
    trained = f"trained in {q.train_seconds:.1f} s" if q.train_seconds else "loaded"
    st.markdown(f"**SAE** ({trained}: `{result.sae_source}`): explained variance **{q.explained_variance:.3f}**, "
                f"L0 **{q.l0:.1f}**, dead features {q.dead_fraction:.0%}, measured on {q.n_tokens:,} tokens; "
                f"{result.n_fact_features} features per fact.")
    st.caption(result.layer_note)
    variant = st.radio("Steering variant", list(VARIANTS), format_func=VARIANTS.get, horizontal=True,
                       key="sae_variant")
    return [plot_dose_response(result, variant=variant), plot_expert_activation(result), *_sweep(result)]


render("sae_restoration", plots=plots,
       main=("layer", "alphas", "n_fact_features", "n_expert", "headline_alpha"),
       intro=("Trains a sparse autoencoder on the original's activations and re-injects each forgotten fact's own "
              "features (solid; the forget set's shared concept features dotted, random features dashed) into "
              "each unlearned model: answers that come back were suppressed, not deleted."))
