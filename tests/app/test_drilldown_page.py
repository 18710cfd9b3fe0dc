"""Per-item drill-down page on the tiny lab: runs the scorecard when the store lacks it, shows one row per (item,
checkpoint), reads a stored probe's per-item recovery and filters to "forgot behaviourally but a probe recovers"."""

from __future__ import annotations

import pytest

from tests.app.apptest_helpers import frame, no_exception, texts
from unlearn_core.report.drilldown import REC_PREFIX

pytestmark = pytest.mark.lab


def test_drilldown_page_renders_filters_and_exports(app):
    from views._shared import nav

    assert "views/drilldown.py" in [f for f, _, _ in nav.available()]
    app.switch_page("views/drilldown.py").run()
    no_exception(app)
    app.button(key="drill_run_scorecard").click().run()
    no_exception(app)
    table = frame(app, "item", "checkpoint", "generated_answer", "forgot_but_recovered")
    n_cp = len(app.session_state["workspace"].names())
    assert n_cp >= 7 and len(table) == 20 * n_cp and table.generated_answer.notna().all()
    assert "No probe results in the store" in texts(app)

    # a probe run elsewhere shows up per item
    app.switch_page("views/patching.py").run()
    app.button(key="run_patching").click().run()
    no_exception(app)
    app.switch_page("views/drilldown.py").run()
    no_exception(app)
    table = frame(app, "item", "checkpoint", "forgot_but_recovered")
    assert REC_PREFIX + "patching_retention" in table.columns
    app.toggle(key="drill_forgot_recovered").set_value(True).run()
    no_exception(app)
    view = frame(app, "item", "checkpoint", "forgot_but_recovered")
    assert 0 < len(view) < len(table) and view.forgot_but_recovered.all()
    assert "suppressed_head" in set(view.checkpoint) and "original" not in set(view.checkpoint)
    one = [d.value for d in app.dataframe if "item" not in d.value.columns and "checkpoint" in d.value.columns]
    assert len(one) == 1 and len(one[0]) == n_cp and one[0].checkpoint.is_unique
    labels = [b.label for b in app.get("download_button")]
    assert labels.count("CSV") == labels.count("LaTeX") == 2
