"""The training-dynamics page in the real dashboard (headless Chromium): a real gradient-ascent series typed in,
audited from the page, drawn with one line per series and the verdict band per step."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_browser import SCORECARD_TIMEOUT_MS, go, shot, wait_idle
from tests.fixtures.checkpoints import train_full_ga_series

pytestmark = [pytest.mark.browser, pytest.mark.lab]


def test_dynamics_renders_in_the_browser(server, page, tiny_lab, tmp_path):
    url, _ = server
    run = tmp_path / "ga_run"
    train_full_ga_series(tiny_lab, run, steps=16, every=8, lr=1e-4)
    page.goto(url)
    page.get_by_role("heading", name="Workspace", level=1).wait_for(timeout=180_000)
    wait_idle(page)
    go(page, "Training dynamics")
    box = page.get_by_label("Series, one per line as NAME=FOLDER")
    box.fill(f"ga={run}")
    box.press("Control+Enter")
    wait_idle(page)
    page.get_by_role("button", name="Audit the 2 missing steps").click()
    page.get_by_text(re.compile(r"first looks forgotten at step")).wait_for(timeout=SCORECARD_TIMEOUT_MS)
    wait_idle(page)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    assert not page.get_by_test_id("stException").count()
    legend = plot.locator(".legend").text_content()  # SVG: text_content, not inner_text
    assert "ga: forget acc" in legend and "ga: still inside" in legend
    assert plot.get_by_text("verdict per step").count() == 1
    # the band: one bar per audited step
    assert plot.locator(".barlayer .point").count() == 2
    # one behaviour line per series (forget and retain), one retention line
    assert plot.locator(".scatterlayer .trace").count() >= 3
    shot(page, "dynamics")
