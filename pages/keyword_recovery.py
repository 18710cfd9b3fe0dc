"""Keyword-emphasis recovery: does stressing the keywords bring forgotten answers back?"""

from __future__ import annotations

from pages._shared.analysis_page import render


def plots(result) -> list:
    from unlearn_core.viz.plot_attribution import plot_keyword_recovery

    return [plot_keyword_recovery(result)]


render("keyword_recovery", "unlearn_core.analyses.keyword_emphasis", plots=plots, intro=(
    "Re-asks the forget questions with the entity's keywords emphasised; answers that come back were "
    "suppressed, not deleted."
))
