"""The item drill-down in the real dashboard (headless Chromium): the scorecard is run from the page itself, the
table shows every forget item for every checkpoint of the tiny lab's workspace, and the one-click filter works."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_browser import SCORECARD_TIMEOUT_MS, go, shot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.lab]


def test_drilldown_renders_in_the_browser(server, page, tiny_lab):
    url, _ = server
    page.goto(url)
    page.get_by_role("heading", name="Workspace", level=1).wait_for(timeout=180_000)
    wait_idle(page)
    go(page, "Item drill-down")
    page.get_by_role("button", name=re.compile("Run scorecard")).click()
    page.get_by_text(re.compile(r"of \d+ rows")).wait_for(timeout=SCORECARD_TIMEOUT_MS)
    wait_idle(page)
    n_items = len((tiny_lab / "data" / "forget.jsonl").read_text().splitlines())
    summary = page.get_by_text(re.compile(r"of \d+ rows")).inner_text()
    n_rows = int(re.search(r"of (\d+) rows", summary).group(1))
    assert n_rows % n_items == 0 and n_rows // n_items >= 7  # every checkpoint of the workspace, every item
    page.get_by_text("One item across all checkpoints").scroll_into_view_if_needed()
    page.get_by_test_id("stDataFrame").nth(1).wait_for()  # the whole table and the one-item table
    assert not page.get_by_test_id("stException").count()
    shot(page, "drilldown")
    # no probe stored yet: the one-click filter leaves nothing
    page.get_by_text("Forgot behaviourally but a probe recovers", exact=True).click()
    page.get_by_text(re.compile(r"^0 of \d+ rows")).wait_for()
    wait_idle(page)
    assert not page.get_by_test_id("stException").count()
