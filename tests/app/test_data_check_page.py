"""The headline page's data check (AppTest, tiny lab): the lab's own data passes with no warning; a forget set the
original never knew is flagged and every checkpoint reads "nothing to audit" before any probe runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.app.apptest_helpers import frame, no_exception, texts
from unlearn_core.data.items import QAItem

pytestmark = pytest.mark.lab

UNKNOWN = tuple(QAItem(q, a, line=i + 1) for i, (q, a) in enumerate([
    ("Where was Zalbert Quonnivar born?", "Mirefall"), ("What is the profession of Zalbert Quonnivar?", "cooper"),
    ("Who employs Zalbert Quonnivar?", "Dunmere Works"), ("What is the hobby of Zalbert Quonnivar?", "falconry")]))


def test_the_labs_data_passes_the_check_without_a_warning(app):
    app.switch_page("views/verdict.py").run()
    no_exception(app)
    shown = texts(app)
    n = len(app.session_state["workspace"].data.forget)
    assert "The data fits the audit" in shown and f"answers **{n} of {n}**" in shown
    assert not [w for w in app.warning if "Data check" in str(w.value)]
    assert not [e for e in app.error if "Data check" in str(e.value)]
    assert app.button(key="run_verdict_fast").label.startswith("Run scorecard")  # the audit goes on
    items = frame(app, "split", "prompt", "known")
    assert items[items["split"] == "forget"]["known"].all()


def test_unknown_forget_set_is_nothing_to_audit(app):
    ws = app.session_state["workspace"]
    app.session_state["workspace"] = replace(ws, data=replace(ws.data, forget=UNKNOWN))
    app.switch_page("views/verdict.py").run()
    no_exception(app)
    errors = [str(e.value) for e in app.error]
    assert any("answers 0 of 4 forget questions: nothing to unlearn" in e and "prompt template" in e
               for e in errors), errors
    verdicts = frame(app, "model", "verdict", "reason")
    assert set(verdicts["verdict"]) == {"nothing to audit"}
    assert sorted(verdicts["model"]) == sorted(n for n, _ in ws.spec.unlearned)  # every one, the controls included
    assert not verdicts["reason"].str.contains("looks forgotten").any()
    assert "run_verdict_fast" not in [b.key for b in app.button]  # no probe on a set the original never knew
