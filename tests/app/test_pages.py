"""Analysis pages and the headline "Suppression vs deletion" page driven through AppTest on the tiny demo lab.

Each page is run through its own Run button; what it shows is checked (tables with the workspace's checkpoints,
chart titles, export buttons) and a second visit must come back from the results store without a Run button.
"""

from __future__ import annotations

import pytest

from tests.app.apptest_helpers import frame as _frame
from tests.app.apptest_helpers import no_exception as _no_exception
from tests.app.apptest_helpers import texts as _texts
from unlearn_core.workspace import lab_workspace

pytestmark = pytest.mark.lab

CHECKPOINTS = {"original", "ga", "graddiff", "npo", "rmu", "suppressed_head", "retain_only"}


def _chart_titles(at) -> list[str]:
    import json

    titles = []
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        titles.append(spec["layout"]["title"]["text"])
    return titles


def _download_labels(at) -> list[str]:
    return [el.proto.label for el in at.get("download_button")]


def _run_page(app, file: str, run_key: str):
    app.switch_page(file).run()
    _no_exception(app)
    app.button(key=run_key).click().run()
    _no_exception(app)
    assert "Computed in" in _texts(app)
    return app


def _served_from_store(app, file: str) -> None:
    """A second visit finds the result in the store: no Run button, the "served from the results store" caption."""
    app.switch_page("pages/workspace.py").run()
    app.session_state["results"] = {}  # forget the session memo: the store itself must answer
    app.switch_page(file).run()
    _no_exception(app)
    assert "Served from the results store" in _texts(app)
    assert not [b for b in app.button if b.label.startswith("Run ")]


@pytest.mark.parametrize(("file", "name", "table_cols", "title_part"), [
    ("pages/patching.py", "patching", ("model", "uds", "patching_retention"), "Layer-wise patching"),
    ("pages/representation.py", "representation", ("model", "split", "layer", "cka"), "Linear CKA"),
    ("pages/keyword_recovery.py", "keyword_recovery", ("model", "recovery_p"), "Keyword-emphasis recovery"),
])
def test_analysis_page_runs_shows_and_exports(app, file, name, table_cols, title_part):
    _run_page(app, file, f"run_{name}")
    df = _frame(app, *table_cols)
    assert CHECKPOINTS - {"original"} <= set(df["model"])  # every chosen checkpoint (the original may be the reference)
    titles = _chart_titles(app)
    assert any(title_part in t for t in titles), titles
    labels = _download_labels(app)
    for fmt in ("SVG", "PDF", "PNG", "CSV", "LaTeX"):
        assert fmt in labels, labels
    _served_from_store(app, file)
    assert any(title_part in t for t in _chart_titles(app))


def test_representation_picker_switches_logit_lens_split(app):
    _run_page(app, "pages/representation.py", "run_representation")
    app.radio(key="repr_lens_split").set_value("retain").run()
    _no_exception(app)
    assert any("Logit lens on retain prompts" in t for t in _chart_titles(app))


def test_headline_page_fast_path_verdicts(app, tiny_lab):
    from pages._shared import nav

    assert nav.available()[1][0] == "pages/verdict.py"  # first after Workspace
    app.switch_page("pages/verdict.py").run()
    _no_exception(app)
    assert "Suppression vs deletion" in [t.value for t in app.title]
    assert app.button(key="run_verdict_fast").label == "Run scorecard + patching"
    app.button(key="run_verdict_fast").click().run()
    _no_exception(app)
    verdicts = _frame(app, "model", "verdict", "looks_forgotten", "retention", "reason")
    by_model = dict(zip(verdicts["model"], verdicts["verdict"]))
    assert by_model["suppressed_head"] == "suppressed"  # ground truth of the planted control
    assert by_model["retain_only"] == "deleted"  # the deletion reference never saw the forget set
    assert "original" not in by_model
    assert "patching_retention" in verdicts.columns
    assert "suppressed if r >=" in _texts(app)  # the rule is written on the page
    titles = _chart_titles(app)
    assert "Looks forgotten vs still inside" in titles and "Retention evidence per checkpoint" in titles
    sources = _frame(app, "analysis", "in store")
    assert sources.set_index("analysis").loc["Layer-wise patching (UDS)", "in store"]
    # a second visit reads the store: the fast button has nothing left to run
    app.switch_page("pages/workspace.py").run()
    app.switch_page("pages/verdict.py").run()
    assert app.button(key="run_verdict_fast").disabled


def test_headline_page_retain_only_as_unlearned_checkpoint_is_deleted(app, tiny_lab):
    """The retain-only model entered as one more unlearned checkpoint ("retrained") reads as deleted."""
    from dataclasses import replace

    from pages._shared import state

    spec = lab_workspace(tiny_lab, unlearned=["suppressed_head"])
    spec = replace(spec, unlearned=(*spec.unlearned, ("retrained", str(tiny_lab / "retain_only"))))
    app.session_state["workspace"] = state.Workspace(spec, spec.load_data(), app.session_state["workspace"].store_path)
    app.switch_page("pages/verdict.py").run()
    app.button(key="run_verdict_fast").click().run()
    _no_exception(app)
    verdicts = _frame(app, "model", "verdict")
    by_model = dict(zip(verdicts["model"], verdicts["verdict"]))
    assert by_model == {"suppressed_head": "suppressed", "retrained": "deleted", "retain_only": "deleted"}, by_model


def test_headline_page_with_sae_restoration(app):
    """More evidence: SAE restoration. The planted controls keep their verdicts, suppressed_head now with high
    restoration and retain_only with none, and the dose-response and expert-feature charts appear."""
    app.switch_page("pages/verdict.py").run()
    app.multiselect(key="vd_more").set_value(["sae_restoration"]).run()
    app.button(key="run_verdict_more").click().run()
    _no_exception(app)
    verdicts = _frame(app, "model", "verdict", "retention", "sae_restoration").set_index("model")
    assert verdicts.loc["suppressed_head", "verdict"] == "suppressed"
    assert verdicts.loc["suppressed_head", "sae_restoration"] >= 0.5
    assert verdicts.loc["retain_only", "verdict"] == "deleted"
    assert verdicts.loc["retain_only", "sae_restoration"] < 0.05
    titles = _chart_titles(app)
    assert any(t.startswith("SAE restoration dose-response") for t in titles), titles
    assert any(t.startswith("Expert SAE features") for t in titles), titles
    facts = _frame(app, "prompt", "answer", "n_features", "mass_share", "top_features")
    assert len(facts) and facts["n_features"].min() > 0


def test_sae_page_runs_and_sweeps_layers(app):
    _run_page(app, "pages/sae_restoration.py", "run_sae_restoration")
    assert "explained variance" in _texts(app) and "L0" in _texts(app)  # so the user can judge the SAE
    titles = _chart_titles(app)
    assert any(t.startswith("SAE restoration dose-response (inject") for t in titles), titles
    app.radio(key="sae_variant").set_value("scale").run()
    assert any(t.startswith("SAE restoration dose-response (scale") for t in _chart_titles(app))
    assert not any(t.startswith("SAE restoration per layer") for t in _chart_titles(app))
    app.button(key="sae_sweep_run").click().run()
    _no_exception(app)
    assert any(t.startswith("SAE restoration per layer") for t in _chart_titles(app))
    sweep = _frame(app, "model", "layer", "sae_restoration", "explained_variance")
    sup = sweep[sweep["model"] == "suppressed_head"].set_index("layer")["sae_restoration"]
    assert sup[0] == 0.0 and sup[2] >= 0.5, sup.to_dict()  # restorable only where it was changed
    _served_from_store(app, "pages/sae_restoration.py")
    assert any(t.startswith("SAE restoration per layer") for t in _chart_titles(app))  # every layer from the store
