"""Keyword-emphasis recovery: re-ask the forget questions with the entity's keywords emphasised."""

from __future__ import annotations

import streamlit as st

from views._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.analyses.keyword_recovery.plots import plot_keyword_recovery

    measure = st.radio("Recovery measured on", ["p", "acc"], horizontal=True, key="kw_measure",
                       format_func={"p": "answer probability p~", "acc": "answer accuracy"}.get)
    return [plot_keyword_recovery(result, measure)]


render("keyword_recovery", plots=plots,
       main=("variants", "keywords", "top_k"),
       intro=("Re-asks the forget questions with the entity's keywords emphasised; answers that come back were "
              "suppressed, not deleted."))
