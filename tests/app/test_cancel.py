"""Stopping a run (Streamlit raises StopException/RerunException inside the next progress update) must leave the
results store exactly as it was: the store writes one transaction after the computation, never partial results.
"""

from __future__ import annotations

import sqlite3

import pytest
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

from unlearn_core.analyses.scorecard import ScorecardConfig
from unlearn_core.run.audit import get_analysis, run_analysis
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.results import ResultsStore
from unlearn_core.types import AuditData

pytestmark = pytest.mark.lab


def test_stopped_scorecard_writes_nothing_and_store_stays_usable(tiny_lab, tmp_path):
    spec = lab_workspace(tiny_lab, unlearned=["ga"])
    models = spec.load_models()
    full = spec.load_data()
    data = AuditData(full.forget, (), full.holdout, full.prompt_format)  # no retain split: keeps the test quick
    analysis, cfg = get_analysis("scorecard"), ScorecardConfig(generate=False)
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    calls = []

    def stop_midway(frac: float, msg: str) -> None:
        calls.append(frac)
        if len(calls) == 3:  # what the Stop button does: the next st.* call raises inside the computation
            raise StopException()

    with pytest.raises(StopException):
        run_analysis(analysis, models, data, store, config=cfg, progress=stop_midway)
    assert 0 < calls[-1] < 1  # it really was stopped in the middle
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 0

    result, from_store = run_analysis(analysis, models, data, store, config=cfg)
    assert not from_store
    again, from_store = run_analysis(analysis, models, data, store, config=cfg)
    assert from_store and again.to_frame().equals(result.to_frame())
    store.close()


def test_store_key_from_folders_matches_loaded_models(tiny_lab, monkeypatch):
    """The dashboard finds stored results without loading models (the page's own plan, from the folders' hashes);
    its key must equal the one the CLI computes with the models loaded, for an analysis whose config resolves
    against the model (a layer) too."""
    from unlearn_core.analyses.sae_restoration import RestorationConfig
    from unlearn_core.run.audit import result_key
    from views._shared import state

    spec = lab_workspace(tiny_lab, unlearned=["ga", "rmu"])
    ws = state.Workspace(spec, spec.load_data(), str(tiny_lab / "unused.sqlite"))

    def no_load(*a, **k):
        raise AssertionError("the page planned its job by loading the models")

    monkeypatch.setattr(state, "models", no_load)
    fast = {name: state.plan(name, cfg, ws) for name, cfg in (("scorecard", ScorecardConfig()),
                                                               ("sae_restoration", RestorationConfig()))}
    monkeypatch.undo()
    models = spec.load_models()
    assert fast["scorecard"].key == result_key("scorecard", models, ws.data, ScorecardConfig())
    assert fast["sae_restoration"].key == result_key("sae_restoration", models, ws.data, RestorationConfig())
    assert fast["sae_restoration"].config.layer is not None  # resolved from config.json, not left at "auto"
    assert fast["scorecard"].key != fast["sae_restoration"].key
