"""Analysis pages and the headline "Suppression vs deletion" page driven through AppTest on the tiny demo lab.

Each page is run through its own Run button; what it shows is checked (tables with the workspace's checkpoints,
chart titles, export buttons) and a second visit must come back from the results store without a Run button.
"""

from __future__ import annotations

import pytest

from tests.app.apptest_helpers import frame as _frame
from tests.app.apptest_helpers import no_exception as _no_exception
from tests.app.apptest_helpers import texts as _texts
from unlearn_core.run.workspace import lab_workspace

pytestmark = pytest.mark.lab

CHECKPOINTS = {"original", "ga", "graddiff", "npo", "rmu", "suppressed_head", "suppressed_lowrank", "retrained",
               "retain_only"}


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
    app.switch_page("views/workspace.py").run()
    app.session_state["results"] = {}  # forget the session memo: the store itself must answer
    app.switch_page(file).run()
    _no_exception(app)
    assert "Served from the results store" in _texts(app)
    assert not [b for b in app.button if b.label.startswith("Run ")]


@pytest.mark.parametrize(("file", "name", "table_cols", "title_part"), [
    ("views/patching.py", "patching", ("model", "uds", "one_minus_uds"), "Layer-wise patching"),
    ("views/representation.py", "representation", ("model", "split", "layer", "cka"), "Linear CKA"),
    ("views/keyword_recovery.py", "keyword_recovery", ("model", "recovery_p"), "Keyword-emphasis recovery"),
    ("views/prompt_variants.py", "prompt_variants", ("model", "attack", "forget_p", "level_excess"), "Prompt variants"),
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
    _run_page(app, "views/representation.py", "run_representation")
    app.radio(key="repr_lens_split").set_value("retain").run()
    _no_exception(app)
    assert any("Logit lens on retain prompts" in t for t in _chart_titles(app))


def test_headline_page_default_evidence_verdicts(app, tiny_lab):
    from views._shared import nav

    assert nav.available()[1][0] == "views/verdict.py"  # first after Workspace
    app.switch_page("views/verdict.py").run()
    _no_exception(app)
    assert "Suppression vs deletion" in [t.value for t in app.title]
    assert app.button(key="run_verdict_fast").label == \
        "Run scorecard + decodability + patching + update revert + relearning"
    app.button(key="run_verdict_fast").click().run()
    _no_exception(app)
    verdicts = _frame(app, "model", "verdict", "deciding_axis", "looks_forgotten", "retention_excess", "ci_low",
                      "ci_high", "control")
    by_model = dict(zip(verdicts["model"], verdicts["verdict"]))
    axis = dict(zip(verdicts["model"], verdicts["deciding_axis"]))
    # ground truth of the known-truth controls (lab.json), each call on the axis that may make it
    assert by_model["suppressed_head"] == "suppressed" and axis["suppressed_head"] == "recoverable", by_model
    assert by_model["suppressed_lowrank"] in ("suppressed", "partially suppressed", "hidden by a small edit"), by_model
    assert by_model["retrained"] == "deleted", by_model
    for deletion in ("non_twin", "over_unlearned"):
        assert by_model[deletion] not in ("suppressed", "partially suppressed", "hidden by a small edit"), by_model
    assert "original" not in by_model and "retain_only" not in by_model  # the reference is the control
    row = verdicts.set_index("model").loc["suppressed_head"]
    assert row["ci_low"] >= 0.15 and row["ci_low"] <= row["retention_excess"] <= row["ci_high"]
    assert row["control"] == "retain-only reference"
    from unlearn_core.evidence.verdict import VerdictConfig
    from unlearn_core.run.audit import resolve_rule

    # the rule on the page is the rule the code runs, word for word
    assert f"**Rule.** {resolve_rule(VerdictConfig()).rule_text()}" in [m.value for m in app.markdown]
    assert "edit of the original" in _texts(app) and "hidden by a small edit" in _texts(app)
    titles = _chart_titles(app)
    assert "Looks forgotten vs still inside" in titles
    assert "Excess recovery over the control, per probe and checkpoint" in titles
    assert "Probe validity on the planted controls" in titles  # the demo lab's truth is known
    validity = _frame(app, "evidence", "control", "separates", "false_calls")
    dec = validity[(validity["evidence"] == "decodability") & (validity["control"] == "retain-only reference")]
    # decodability never calls a deletion suppressed; with entity intervals it misses the low-rank suppression alone
    # (tiny lab: +0.22 [-0.03, +0.60]), which relearning and the joint test see
    assert dec["false_calls"].iloc[0] == 0
    rev = validity[validity["evidence"] == "revert_recovery"].set_index("control")
    # the update revert separates only against the reference: raw, the retrained model moves back towards the original
    assert bool(rev.loc["retain-only reference", "separates"]) and rev.loc["retain-only reference", "false_calls"] == 0
    assert not bool(rev.loc["uncalibrated (raw recovery)", "separates"])
    sources = _frame(app, "analysis", "in store")
    assert sources.set_index("analysis").loc["Layer-wise patching (UDS)", "in store"]
    # a second visit reads the store: the default button has nothing left to run
    app.switch_page("views/workspace.py").run()
    app.switch_page("views/verdict.py").run()
    assert app.button(key="run_verdict_fast").disabled


def test_cli_and_dashboard_give_identical_verdicts(app, tiny_lab, tmp_path):
    """One workspace, two front ends: the page's verdict table equals the CLI's verdicts.csv, number for number."""
    import pandas as pd

    from unlearn_core.cli import main

    app.switch_page("views/verdict.py").run()
    app.button(key="run_verdict_fast").click().run()
    _no_exception(app)
    page = _frame(app, "model", "verdict", "retention_excess", "ci_low", "ci_high").set_index("model")
    assert main(["audit", "--lab", str(tiny_lab), "--out", str(tmp_path / "cli")]) == 0
    cli = pd.read_csv(tmp_path / "cli" / "verdicts.csv").set_index("model")
    assert sorted(page.index) == sorted(cli.index)
    assert (page["verdict"] == cli.loc[page.index, "verdict"]).all(), (page, cli)
    for col in ("retention_excess", "ci_low", "ci_high"):
        assert (page[col] - cli.loc[page.index, col]).abs().max() < 1e-9, col


def test_headline_page_reads_the_same_run_without_the_reference(app, app_env, tiny_lab, tmp_path):
    """One run with the reference, two readings: the Control switch gives, from the stored results alone, the
    verdicts of a separate --no-reference audit, number for number."""
    import pandas as pd

    from unlearn_core.cli import main

    app.switch_page("views/verdict.py").run()
    app.button(key="run_verdict_fast").click().run()
    _no_exception(app)
    assert "retain-only reference" in set(_frame(app, "model", "control")["control"])
    app.radio(key="vd_control").set_value(False).run()
    _no_exception(app)
    assert "Read without the retain-only reference" in _texts(app)
    page = _frame(app, "model", "verdict", "control", "retention_excess", "ci_low", "ci_high").set_index("model")
    assert set(page["control"]) == {"holdout split"} and "retain_only" not in page.index
    out = tmp_path / "noref"
    assert main(["audit", "--lab", str(tiny_lab), "--no-reference", "--out", str(out), "--store", str(app_env)]) == 0
    cli = pd.read_csv(out / "verdicts.csv").set_index("model")
    assert sorted(page.index) == sorted(cli.index)
    assert (page["verdict"] == cli.loc[page.index, "verdict"]).all(), (page, cli)
    for col in ("retention_excess", "ci_low", "ci_high"):
        assert (page[col] - cli.loc[page.index, col]).abs().max() < 1e-9, col


def test_headline_page_without_reference(app, tiny_lab):
    """No retain-only model: self-contained probes are calibrated on the holdout split, patching needs a reference
    and does not count, and no planted control gets the wrong call."""
    from dataclasses import replace

    from views._shared import state

    spec = replace(lab_workspace(tiny_lab, unlearned=["suppressed_head", "retrained"]), retain_only=None)
    app.session_state["workspace"] = state.Workspace(spec, spec.load_data(), app.session_state["workspace"].store_path)
    app.switch_page("views/verdict.py").run()
    app.button(key="run_verdict_fast").click().run()
    _no_exception(app)
    assert "No retain-only reference" in _texts(app)
    df = _frame(app, "model", "verdict")
    verdicts = dict(zip(df["model"], df["verdict"]))
    assert verdicts["suppressed_head"] in ("suppressed", "inconclusive"), verdicts
    assert verdicts["retrained"] in ("deleted", "inconclusive"), verdicts
    ev = _frame(app, "model", "evidence", "control", "counted", "why_not_counted")
    patch = ev[ev["evidence"] == "patching_retention"]
    assert len(patch) and not patch["counted"].any()
    assert patch["why_not_counted"].str.contains("needs a deletion reference").all()
    dec = ev[ev["evidence"] == "decodability"]
    assert (dec["control"] == "holdout split").all()


def test_headline_page_with_sae_restoration(app):
    """More evidence: SAE restoration. It is shown with its calibrated excess but not counted by default (it does not
    separate the planted controls), the page says why, the verdicts stay, and its charts appear."""
    app.switch_page("views/verdict.py").run()
    app.multiselect(key="vd_more").set_value(["sae_restoration"]).run()
    app.button(key="run_verdict_more").click().run()
    _no_exception(app)
    verdicts = _frame(app, "model", "verdict").set_index("model")["verdict"]
    assert verdicts["suppressed_head"] == "suppressed" and verdicts["retrained"] == "deleted"
    ev = _frame(app, "model", "evidence", "counted", "why_not_counted")
    sae = ev[ev["evidence"] == "sae_restoration"]
    assert len(sae) and not sae["counted"].any() and sae["why_not_counted"].str.contains("original").all()
    assert "Not counted by default" in _texts(app)
    titles = _chart_titles(app)
    assert any(t.startswith("SAE restoration dose-response") for t in titles), titles
    assert any(t.startswith("Expert SAE features") for t in titles), titles
    facts = _frame(app, "prompt", "answer", "n_features", "mass_share", "top_features")
    assert len(facts) and facts["n_features"].min() > 0


def test_sae_page_runs_and_sweeps_layers(app):
    _run_page(app, "views/sae_restoration.py", "run_sae_restoration")
    assert "explained variance" in _texts(app) and "L0" in _texts(app)  # so the user can judge the SAE
    titles = _chart_titles(app)
    assert any(t.startswith("SAE restoration dose-response (inject") for t in titles), titles
    app.radio(key="sae_variant").set_value("scale").run()
    assert any(t.startswith("SAE restoration dose-response (scale") for t in _chart_titles(app))
    assert not any(t.startswith("SAE restoration per layer") for t in _chart_titles(app))
    app.button(key="sae_sweep_run").click().run()
    _no_exception(app)
    assert any(t.startswith("SAE restoration per layer") for t in _chart_titles(app))
    sweep = _frame(app, "model", "layer", "sae_restoration_fact", "explained_variance")
    sup = sweep[sweep["model"] == "suppressed_head"].set_index("layer")["sae_restoration_fact"]
    assert sup[0] == 0.0 and sup[2] >= 0.3, sup.to_dict()  # restorable only where it was changed
    _served_from_store(app, "views/sae_restoration.py")
    assert any(t.startswith("SAE restoration per layer") for t in _chart_titles(app))  # every layer from the store


def test_headline_page_says_why_a_bad_process_count_runs_nothing(app, monkeypatch):
    monkeypatch.setenv("UNLEARN_AUDIT_JOBS", "two")
    app.switch_page("views/verdict.py").run()
    app.button(key="run_verdict_fast").click().run()
    _no_exception(app)
    assert any("UNLEARN_AUDIT_JOBS must be a whole number" in e.value for e in app.error), [e.value for e in app.error]


def test_a_setting_with_a_closed_set_of_values_is_a_pick_list(app):
    """Decodability's readout and target declare their values: the page offers them, nothing to mistype."""
    app.switch_page("views/decodability.py").run()
    _no_exception(app)
    readout = app.selectbox(key="decodability_cfg_readout")
    assert list(readout.options) == ["auto", "classes", "vocab"] and readout.value == "auto"
    more = app.selectbox(key="decodability_cfg_target")
    assert list(more.options) == ["auto", "first_distinct", "first_new", "first"]
