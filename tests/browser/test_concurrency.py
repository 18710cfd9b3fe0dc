"""Two browser sessions (two Playwright contexts, as two people would be) run different analyses on the same
workspace at the same time: both finish, the results store passes its integrity check, and the numbers equal those
of each analysis computed alone. Perturbation hooks noise into the blocks of the models the sessions share."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_browser import SCORECARD_TIMEOUT_MS, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.lab]
RUNS = {"Quantization": ("quantization", "Run quantization probe"),
        "Perturbation": ("perturbation", "Run activation perturbation probe")}


def test_two_sessions_run_analyses_at_once_with_the_numbers_of_each_alone(server, tiny_lab):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    url, store_path = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            pages = {}
            for title in RUNS:  # two contexts: separate cookies, separate Streamlit sessions
                pg = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
                pg.set_default_timeout(120_000)
                pg.goto(f"{url}/{RUNS[title][0]}")  # the page's own address (the sidebar folds long lists)
                pg.get_by_role("button", name=RUNS[title][1]).wait_for(timeout=180_000)
                pages[title] = pg
            for title, pg in pages.items():  # both clicks before either run can finish
                pg.get_by_role("button", name=RUNS[title][1]).click()
            for pg in pages.values():
                pg.get_by_text(re.compile(r"Computed in [\d.]+ s")).wait_for(timeout=SCORECARD_TIMEOUT_MS)
                wait_idle(pg, timeout=SCORECARD_TIMEOUT_MS)
                assert not pg.get_by_test_id("stException").count()
        finally:
            browser.close()

    con = sqlite3.connect(store_path)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()
    from unlearn_core.run.audit import get_analysis, run_analysis
    from unlearn_core.run.workspace import lab_workspace
    from unlearn_core.store.results import ResultsStore

    spec = lab_workspace(tiny_lab, device="cpu")  # the app's default workspace: the whole demo lab
    models, data = spec.load_models(), spec.load_data()
    with ResultsStore(store_path) as store:
        for name, _ in RUNS.values():
            listed = store.list(name)
            assert len(listed) == 1, listed
            served = get_analysis(name).tables(store.get_obj(listed["key"].iloc[0]))
            alone = get_analysis(name).tables(run_analysis(get_analysis(name), models, data, None)[0])
            assert served.keys() == alone.keys()
            for table in alone:
                pd.testing.assert_frame_equal(served[table], alone[table], check_exact=False, rtol=1e-6)
