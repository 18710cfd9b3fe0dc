"""Training-dynamics page on the tiny lab: a real gradient-ascent series is audited on request, read back from the
store on the next run without a click, and drawn with one line per series and the verdict band."""

from __future__ import annotations

import pytest

from tests.app.apptest_helpers import frame, no_exception, texts
from tests.fixtures.checkpoints import train_full_ga_series

pytestmark = pytest.mark.lab


def test_dynamics_page_audits_a_series_then_reads_it_from_the_store(app, tiny_lab, tmp_path):
    from views._shared import nav

    assert "views/dynamics.py" in [f for f, _, _ in nav.available()]
    run = tmp_path / "ga_run"
    recorded = train_full_ga_series(tiny_lab, run, steps=16, every=8, lr=1e-4)
    app.switch_page("views/dynamics.py").run()
    no_exception(app)
    assert "Give one or more series folders" in texts(app)
    # the demo lab ships a series of its own (extras/ga_series): one click fills it in, nothing is computed yet
    app.button(key="dyn_use_lab").click().run()
    assert app.text_area(key="dyn_series").value == f"ga={tiny_lab / 'extras' / 'ga_series'}"
    assert "4 steps** in 1 series; 0 from the results store, 4 not audited yet" in texts(app)
    app.text_area(key="dyn_series").input(f"ga={run}").run()
    app.multiselect(key="dyn_analyses").set_value(["scorecard", "decodability"]).run()
    no_exception(app)
    assert "2 steps** in 1 series; 0 from the results store, 2 not audited yet" in texts(app)
    app.button(key="dyn_run").click().run()
    no_exception(app)
    table = frame(app, "series", "step", "forget_acc", "retention_lo", "verdict")
    assert "0 from the results store, 2 audited now." in texts(app)
    assert list(table["step"]) == [8, 16]
    assert list(table["forget_acc"]) == pytest.approx([recorded[8], recorded[16]])
    assert "**ga**: first looks forgotten at step" in texts(app)
    fig = app.get("plotly_chart")[0].proto.spec
    assert '"ga: forget acc"' in fig and '"verdict per step"' in fig
    labels = [b.label for b in app.get("download_button")]
    assert {"SVG", "PDF", "PNG", "CSV", "LaTeX"} <= set(labels)

    # the next run of the page (a re-open) reads both steps from the store: nothing to click
    app.run()
    no_exception(app)
    assert "2 from the results store." in texts(app)
    assert not [b for b in app.button if b.key == "dyn_run"]
    assert len(frame(app, "series", "step", "verdict")) == 2

    app.text_area(key="dyn_series").input(f"ga={tmp_path / 'nowhere'}").run()
    no_exception(app)
    assert "series folder not found" in texts(app)
