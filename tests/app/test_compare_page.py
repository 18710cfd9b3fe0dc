"""Compare two audits on the page: two CLI reports of the tiny lab, the second under a stricter rule (the same
numbers, read from the first's store): the page shows each call pair, reads the flips as within the intervals, and
names the rule as the one way the runs differ."""

from __future__ import annotations

import pytest

from tests.app.apptest_helpers import frame, no_exception, texts

pytestmark = pytest.mark.lab


def _audit(lab, out, *extra):
    from unlearn_core.cli import main

    assert main(["audit", "--original", str(lab / "original"), "--unlearned", f"supp={lab / 'suppressed_head'}",
                 "--unlearned", f"ro={lab / 'retain_only'}", "--retain-model", str(lab / "retain_only"),
                 "--forget", str(lab / "data" / "forget.jsonl"), "--retain", str(lab / "data" / "retain.jsonl"),
                 "--out", str(out), "--analyses", "scorecard,update_revert", "--device", "cpu", *extra]) == 0


def test_compare_page_shows_both_calls_and_how_the_runs_differ(app, tiny_lab, tmp_path):
    _audit(tiny_lab, tmp_path / "a")
    _audit(tiny_lab, tmp_path / "b", "--store", str(tmp_path / "a" / "results.sqlite"), "--suppressed-at", "0.9",
           "--partial-at", "0.8")
    app.switch_page("views/compare.py").run()
    no_exception(app)
    assert "Give both audits to compare them." in texts(app)
    app.text_input(key="cmp_path_a").input(str(tmp_path / "a")).run()
    app.text_input(key="cmp_path_b").input(str(tmp_path / "nowhere")).run()
    assert "no report.json there" in texts(app)
    app.text_input(key="cmp_path_b").input(str(tmp_path / "b" / "report.json")).run()
    no_exception(app)
    verdicts = frame(app, "checkpoint", "verdict_A", "verdict_B", "reading").set_index("checkpoint")
    assert (verdicts.loc["supp", "verdict_A"], verdicts.loc["supp", "verdict_B"]) == ("hidden by a small edit",
                                                                                     "deleted")
    assert verdicts.loc["supp", "reading"] == "call changed, within the intervals"
    assert verdicts.loc["ro", "reading"] == "same call" and verdicts.loc["supp", "shift"] == 0.0
    runs = frame(app, "field", "A", "B", "same")
    assert list(runs["field"]) == ["verdict_rule"]
    assert "2 checkpoints: 1 same call; 1 call changed, within the intervals" in texts(app)
    assert {"CSV", "LaTeX"} <= {b.label for b in app.get("download_button")}
