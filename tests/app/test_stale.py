"""Changing a setting does not blank a probe page: the previous result stays, marked stale, beside the Run button."""

from __future__ import annotations

import pytest

from tests.app.apptest_helpers import no_exception, texts

pytestmark = pytest.mark.lab


def test_previous_result_stays_visible_and_marked_stale(app):
    app.switch_page("views/patching.py").run()
    app.button(key="run_patching").click().run()
    no_exception(app)
    assert app.get("plotly_chart") and "Stale" not in texts(app)
    box = app.number_input(key="patching_cfg_threshold")
    box.set_value(float(box.value) + 0.05).run()  # settings not in the store yet
    no_exception(app)
    assert any("Stale" in str(w.value) for w in app.warning), texts(app)
    assert app.get("plotly_chart")  # the previous charts are still drawn
    assert app.button(key="run_patching").label.startswith("Run ")
