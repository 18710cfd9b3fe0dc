"""Before Run, the headline page says what the default evidence will cost on this machine: nothing before any run
(no record), then the first run's recorded wall times scaled to the next workspace's size."""

from __future__ import annotations

import pytest

from tests.app.apptest_helpers import no_exception, texts
from unlearn_core.run.workspace import lab_workspace

pytestmark = pytest.mark.lab


def _use(app, tiny_lab, unlearned: list[str]) -> None:
    from views._shared import state

    spec = lab_workspace(tiny_lab, unlearned=unlearned)
    app.session_state["workspace"] = state.Workspace(spec, spec.load_data(), app.session_state["workspace"].store_path)
    app.switch_page("views/verdict.py").run()
    no_exception(app)


def test_headline_page_estimates_the_next_run_from_the_first(app, app_env, tiny_lab):
    from unlearn_core.run.eta import fmt_about
    from unlearn_core.run.timing import NO_RECORD
    from unlearn_core.store.results import ResultsStore
    from views._shared.evidence import FAST

    _use(app, tiny_lab, ["ga"])
    assert f"Time: {NO_RECORD}" in texts(app)
    app.button(key="run_verdict_fast").click().run()
    no_exception(app)
    with ResultsStore(app_env) as store:
        recorded = {a: store.timings(a) for a in FAST}
    assert all(len(r) == 1 and r[0].workload.n_checkpoints == 3 for r in recorded.values()), recorded

    _use(app, tiny_lab, ["npo", "rmu"])  # one checkpoint more, none stored: every analysis x 4/3
    assert not app.button(key="run_verdict_fast").disabled
    shown = texts(app)
    expected = sum(r[0].seconds for r in recorded.values()) * 4 / 3
    assert f"{fmt_about(expected)} on this machine (" in shown, shown
    assert "scaled from recorded runs" in shown and NO_RECORD not in shown
    assert all(f"{a} " in shown for a in FAST)
    # grown from the stored {ga}: only rmu is computed (with the original and the reference), x 3/3
    _use(app, tiny_lab, ["ga", "rmu"])
    grown = sum(r[0].seconds for r in recorded.values())
    if fmt_about(grown) != fmt_about(expected):  # else the two cannot be told apart on the page
        assert f"{fmt_about(grown)} on this machine (" in texts(app), texts(app)
