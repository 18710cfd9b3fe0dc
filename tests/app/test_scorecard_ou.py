"""Scorecard page: the definition switch names every number's definition; an OU EVAL file attached by path shows
its numbers beside the scorecard's with the difference; a bad file is an error naming the key, not a crash."""

from __future__ import annotations

import json

import pytest

from tests.app.apptest_helpers import frame, no_exception, texts

pytestmark = pytest.mark.lab


def test_definition_switch_and_ou_import(app, tmp_path):
    app.switch_page("views/scorecard.py").run()
    no_exception(app)
    assert app.radio(key="sc_definition").value == "open-unlearning"
    app.number_input(key="sc_max_new").set_value(8).run()
    app.button(key="run_scorecard").click().run()
    no_exception(app)
    summary = frame(app, "model", "definition", "forget_acc")
    assert set(summary["definition"]) == {"open-unlearning"}
    assert "made by the **open-unlearning** definition" in texts(app)
    assert {"privleak_mink", "model_utility"} <= set(summary.columns)

    # export from the page's own result, import it back by path: every matched difference is zero
    result = next(iter(app.session_state["results"].values()))
    from unlearn_core.data.ou_format import scorecard_to_ou_eval

    path = tmp_path / "TOFU_EVAL.json"
    path.write_text(json.dumps(scorecard_to_ou_eval(result, "ga")))
    app.selectbox(key="ou_attach_to").set_value("ga").run()
    app.text_input(key="ou_path").set_value(str(path)).run()
    app.button(key="ou_attach_path").click().run()
    no_exception(app)
    agg = frame(app, "metric", "own", "imported", "difference")
    assert "forget_Q_A_Prob" in set(agg["metric"]) and (agg["difference"].dropna().abs() < 1e-12).all()
    assert "TOFU_EVAL.json** attached to **ga**" in texts(app)

    bad = tmp_path / "bad.json"
    bad.write_text('{"forget_Q_A_Prob": {"agg_value": 0.5, "value_by_index": {"0": {"prob": "x"}}}}')
    app.text_input(key="ou_path").set_value(str(bad)).run()
    app.button(key="ou_attach_path").click().run()
    no_exception(app)
    assert any("'prob'" in e.value and "Not attached" in e.value for e in app.error)

    # the other definition is one click away and says so
    app.radio(key="sc_definition").set_value("own").run()
    app.button(key="run_scorecard").click().run()
    no_exception(app)
    assert set(frame(app, "model", "definition", "forget_acc")["definition"]) == {"own"}
    assert "made by the **own** definition" in texts(app)
