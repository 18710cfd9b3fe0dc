"""The dashboard driven through Streamlit's AppTest on the tiny demo lab: every page renders, and the main flow
(choose checkpoints, upload a forget set with a bad row, keep the valid rows, run the scorecard) shows what it must.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.apptest_helpers import frame as _frame
from tests.app.apptest_helpers import no_exception as _no_exception
from tests.app.apptest_helpers import texts as _texts

pytestmark = pytest.mark.lab








def _bad_forget_file(tiny_lab) -> tuple[bytes, int, int]:
    """The lab's forget set with line 3 broken (invalid JSON): (bytes, bad line number, valid rows)."""
    lines = (tiny_lab / "data" / "forget.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # cut mid-object
    return ("\n".join(lines) + "\n").encode(), 3, len(lines) - 1


def test_every_page_renders(app):
    assert "Workspace" in [t.value for t in app.title]
    # the demo lab's checkpoints are offered and preselected
    assert set(app.multiselect(key="lab_unlearned").value) == {"ga", "graddiff", "npo", "rmu", "suppressed_head",
                                                                "suppressed_lowrank", "retrained", "non_twin",
                                                                "over_unlearned"}
    assert app.selectbox(key="lab_retain_only").value == "retain_only"
    app.switch_page("views/scorecard.py").run()
    _no_exception(app)
    assert "Behavioural scorecard" in [t.value for t in app.title]
    assert app.button(key="run_scorecard").label == "Run scorecard"  # cold store: nothing computed on open
    from views._shared import nav

    for file, _title, _ in nav.available()[2:]:  # the other analyses' pages, where their modules exist
        app.switch_page(file).run()
        _page_renders_cleanly(app)
        # nothing is computed just by opening a page: a Run button, or a result already in the store
        assert (file == "views/compare.py"  # reads two report.json files given on the page; computes nothing
                or any(b.label.startswith("Run ") for b in app.button) or "results store" in _texts(app))


def _page_renders_cleanly(at) -> None:
    """No exception, no error box, and the page's own title: an error box is a broken page, not a rendering."""
    _no_exception(at)
    assert not at.error, [str(e.value) for e in at.error]
    assert at.title and at.title[0].value


def test_page_check_catches_a_broken_page():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).parent / "fixtures" / "broken_page.py")).run()
    assert at.title[0].value == "Broken page"  # it renders, with a title ...
    with pytest.raises(AssertionError, match="ModuleNotFoundError"):
        _page_renders_cleanly(at)  # ... and the check still fails it


def test_bad_forget_row_is_reported_with_its_line(app, tiny_lab):
    content, bad_line, n_valid = _bad_forget_file(tiny_lab)
    app.radio(key="src_forget").set_value("Upload").run()
    app.file_uploader(key="up_forget").set_value(("forget_bad.jsonl", content, "application/jsonl")).run()
    _no_exception(app)
    errors = "\n".join(e.value for e in app.error)
    assert f"(line {bad_line})" in errors and "rejected" in errors
    issues = _frame(app, "line", "severity", "reason")
    assert issues["line"].tolist() == [bad_line] and "invalid JSON" in issues["reason"].iloc[0]
    assert app.button(key="apply").disabled  # cannot apply a half-broken forget set silently
    keep = app.checkbox(key="keep_forget")
    assert keep.label == f"Keep the {n_valid} valid rows"
    keep.check().run()
    assert f"{n_valid} valid" in _texts(app)
    assert not app.button(key="apply").disabled


def test_main_flow_scorecard(app, app_env, tiny_lab):
    chosen = ["ga", "rmu"]
    app.multiselect(key="lab_unlearned").set_value(chosen).run()
    content, bad_line, n_valid = _bad_forget_file(tiny_lab)
    app.radio(key="src_forget").set_value("Upload").run()
    app.file_uploader(key="up_forget").set_value(("forget_bad.jsonl", content, "application/jsonl")).run()
    assert any(f"(line {bad_line})" in e.value for e in app.error)
    app.checkbox(key="keep_forget").check().run()
    app.radio(key="src_retain").set_value("None").run()  # keeps the test fast: retain scoring is the slow part
    app.button(key="apply").click().run()
    _no_exception(app)
    # the workspace names files, never display labels: the upload is kept beside the results store
    spec = app.session_state["workspace"].spec
    assert spec.retain is None and spec.holdout == str(tiny_lab / "data" / "holdout.jsonl")
    kept = Path(spec.forget)
    assert kept.parent == app_env.parent / "uploads" and kept.read_bytes() == content
    assert "Workspace applied: 4 checkpoints (original, ga, rmu, retain_only)" in _texts(app)
    assert f"forget {n_valid}" in _texts(app)

    app.switch_page("views/scorecard.py").run()
    _no_exception(app)
    app.number_input(key="sc_max_new").set_value(8).run()
    app.button(key="run_scorecard").click().run()
    _no_exception(app)
    assert "Computed in" in _texts(app)
    summary = _frame(app, "model", "role", "forget_acc − retain_only")
    assert summary["model"].tolist() == ["original", "ga", "rmu", "retain_only"]
    assert summary["role"].tolist() == ["original", "unlearned", "unlearned", "retain_only"]
    # the original still knows the forget set better than the retain-only model does (planted truth)
    acc = summary.set_index("model")["forget_acc"]
    assert acc["original"] > acc["retain_only"]
    # drill-down: one row per checkpoint for the chosen item, with generated answers
    drill = _frame(app, "model", "generated_answer")
    assert drill["model"].tolist() == ["original", "ga", "rmu", "retain_only"]
    assert drill["generated_answer"].notna().all()
    # variant names are shown
    variants = _frame(app, "metric", "variant")
    assert len(variants) > 0 and {"metric", "variant"} <= set(variants.columns)
    # every chart offers SVG/PDF/PNG, every table CSV/LaTeX, plus one bundle
    labels = [b.label for b in app.get("download_button")]
    assert labels.count("SVG") == labels.count("PDF") == labels.count("PNG") >= 7
    assert labels.count("CSV") == labels.count("LaTeX") >= 3
    assert any("zip" in lbl for lbl in labels)

    # the result is in the store now: a new session (empty memo) gets it without recomputing
    import sqlite3

    with sqlite3.connect(app_env) as con:
        rows = con.execute("SELECT analysis, checkpoints FROM results").fetchall()
    assert [r[0] for r in rows] == ["scorecard"]
    assert set(json.loads(rows[0][1])) == {"original", "ga", "rmu", "retain_only"}
    app.session_state["results"] = {}
    app.session_state["scorecard_timing"] = {}
    app.run()
    _no_exception(app)
    assert "Served from the results store" in _texts(app)
    summary = _frame(app, "model", "role", "forget_acc − retain_only")
    assert summary["model"].tolist() == ["original", "ga", "rmu", "retain_only"]


def test_incompatible_or_missing_checkpoint_shows_its_message(app, tiny_lab, tmp_path):
    app.radio(key="ckpt_source").set_value("Local folders").run()
    app.text_area(key="paths_unlearned").set_value(f"ghost={tmp_path / 'no_such_model'}").run()
    app.button(key="apply").click().run()
    _no_exception(app)
    errors = "\n".join(e.value for e in app.error)
    assert "Workspace not applied" in errors and "no_such_model" in errors
    # the previous workspace is still the applied one
    assert "ghost" not in app.session_state["workspace"].names()
