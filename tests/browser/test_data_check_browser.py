"""A researcher's own forget set in the real dashboard (headless Chromium): uploaded on the Workspace page, checked
on the headline page before any probe. A set the original never knew is flagged with its reason and every checkpoint
reads "nothing to audit"; the lab's own set raises no warning."""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.test_browser import go, shot, wait_idle
from unlearn_core.run.workspace import lab_workspace

pytestmark = [pytest.mark.browser, pytest.mark.lab]

UNKNOWN = [("Where was Zalbert Quonnivar born?", "Mirefall"),
           ("What is the profession of Zalbert Quonnivar?", "cooper"),
           ("Who employs Zalbert Quonnivar?", "Dunmere Works"), ("What is the hobby of Zalbert Quonnivar?", "falconry")]


def _open(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name="Workspace", level=1).wait_for(timeout=180_000)
    page.get_by_role("button", name=re.compile("Apply workspace")).wait_for()
    wait_idle(page)


def test_forget_set_the_original_never_knew_is_flagged(server, page, tiny_lab, tmp_path):
    url, _ = server
    _open(page, url)
    own = tmp_path / "my_forget.jsonl"
    own.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in UNKNOWN))
    page.get_by_test_id("stRadio").filter(has_text="Forget set").get_by_text("Upload", exact=True).click()
    wait_idle(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(own))
    wait_idle(page)
    page.get_by_role("button", name=re.compile("Apply workspace")).click()
    page.get_by_text(re.compile("Workspace applied")).wait_for(timeout=180_000)
    wait_idle(page)

    go(page, "Suppression vs deletion")
    page.get_by_role("heading", name="Data check").wait_for(timeout=180_000)
    warning = page.get_by_test_id("stAlert").filter(
        has_text="answers 0 of 4 forget questions: nothing to unlearn")
    warning.wait_for(timeout=180_000)
    assert "prompt template" in warning.inner_text()
    n = len(lab_workspace(tiny_lab).unlearned)  # every unlearned checkpoint, the lab's controls included
    page.get_by_text(re.compile(rf"{n}.{{0,5}}nothing to audit")).first.wait_for()
    assert page.get_by_test_id("stDataFrame").count() >= 1
    assert not page.get_by_role("button", name=re.compile("Run scorecard")).count()  # no probe on this set
    assert not page.get_by_test_id("stException").count()
    shot(page, "20_data_check_unknown_forget_set")


def test_the_labs_own_forget_set_raises_no_warning(server, page):
    url, _ = server
    _open(page, url)
    go(page, "Suppression vs deletion")
    page.get_by_text("The data fits the audit").wait_for(timeout=180_000)
    assert not page.get_by_test_id("stAlert").filter(has_text="Data check").count()
    assert not page.get_by_text("nothing to audit").count()
    page.get_by_role("button", name=re.compile("Run scorecard")).wait_for()
    shot(page, "21_data_check_lab_set", full=False)
