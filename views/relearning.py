"""Relearning probe: how fast does fine-tuning on a few facts restore the rest?"""

from __future__ import annotations

from views._shared.analysis_page import render


def plots(result) -> list:
    import streamlit as st

    from unlearn_core.analyses.relearning.plots import plot_relearning, relearning_curve_stats

    st.dataframe(relearning_curve_stats(result), hide_index=True, width="stretch", key="relearning_curve_stats",
                 column_config={k: st.column_config.NumberColumn(format="%.3f")
                                for k in ("start", "peak", "last", "area_per_step")})
    st.caption("The whole curve per checkpoint (held-out forget accuracy): a retain-only reference that climbs "
               "mid-run shows in its peak and area even when its last step is low.")
    return [plot_relearning(result)]


render("relearning", plots=plots, main=("steps", "lr", "learn_fraction"),
       intro=("Fine-tunes on part of the forget set and measures the held-out part: fast recovery means the "
              "knowledge was still there."))
