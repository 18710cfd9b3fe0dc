"""A workspace root in the real app (headless Chromium): a checkpoint path typed in the browser that leaves
UNLEARN_AUDIT_ROOT (here a symlink inside the root pointing out of it) is refused with a clear message, Apply stays
disabled, and the refused results-store path is never created."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, start_server, stop_server, wait_healthy
from tests.browser.test_browser import wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.lab]


@pytest.fixture()
def rooted_server(tiny_lab, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tiny_lab / "original")
    env = {"UNLEARN_AUDIT_LAB_DIR": str(tiny_lab), "UNLEARN_AUDIT_LAB_CONFIG": "tiny",
           "UNLEARN_AUDIT_STORE": str(root / "results.sqlite"), "UNLEARN_AUDIT_ROOT": str(root)}
    proc, url, log = start_server(env, tmp_path / "streamlit.log")
    try:
        wait_healthy(url, proc)
        yield url, root
    finally:
        stop_server(proc, log)
        print((tmp_path / "streamlit.log").read_text()[-3000:])


def _type(page, label: str, text: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Enter" if box.evaluate("e => e.tagName") == "INPUT" else "Control+Enter")
    wait_idle(page)


def test_a_path_outside_the_root_is_refused_in_the_browser(rooted_server, page, tiny_lab, tmp_path):
    url, root = rooted_server
    page.goto(url)
    page.get_by_role("heading", name="Workspace", level=1).wait_for(timeout=180_000)
    wait_idle(page)
    page.get_by_test_id("stRadio").filter(has_text="Checkpoints from").get_by_text("Local folders").click()
    wait_idle(page)
    page.get_by_text(f"Paths must stay inside the workspace root {root}").wait_for()
    _type(page, "Original checkpoint folder", str(root / "escape"))
    _type(page, "Unlearned checkpoints, one per line as NAME=FOLDER", "ga=../../etc")
    _type(page, "Retain-only checkpoint folder (optional)", "")
    page.get_by_text("Advanced: device, loading, prompt format, results store").click()
    evil = tmp_path / "elsewhere" / "evil.sqlite"
    _type(page, "Results store (SQLite file)", str(evil))
    errors = page.get_by_test_id("stAlert").filter(has_text="Refused")
    errors.filter(has_text=re.compile(r"Original checkpoint folder: .*escape.* is outside the workspace root .*"
                                      r"it resolves to .*original")).wait_for()
    errors.filter(has_text=re.compile("Unlearned ga: .* is outside the workspace root")).wait_for()
    errors.filter(has_text=re.compile("Results store: .* a results store can only be created there")).wait_for()
    page.get_by_text("a path above is not allowed on this server").wait_for()
    assert page.get_by_role("button", name=re.compile("Apply workspace")).is_disabled()
    assert not page.get_by_test_id("stException").count()
    assert not evil.parent.exists()  # nothing was written outside the root
    # a path inside the root is accepted: the refusal for that field goes away
    _type(page, "Results store (SQLite file)", "mine.sqlite")
    errors.filter(has_text="Results store").wait_for(state="detached")  # the rerun may still be finishing
    assert not errors.filter(has_text="Results store").count()
    assert errors.filter(has_text="Original checkpoint folder").count() == 1
