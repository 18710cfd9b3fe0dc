"""Click through the real dashboard in headless Chromium: every page, the forget-set upload with a bad row, the
scorecard run, one chart exported as SVG through its download button, and the headline suppression-vs-deletion
page after running its fast evidence. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import io
import os
import re
import sqlite3
import zipfile
from pathlib import Path

import pytest

from unlearn_core.run.workspace import lab_workspace

pytestmark = [pytest.mark.browser, pytest.mark.lab]
SCREENSHOTS = Path(os.environ.get("UNLEARN_AUDIT_SCREENSHOTS", Path(__file__).resolve().parents[2] / "artifacts"
                                   / "screenshots"))
SCORECARD_TIMEOUT_MS = 900_000  # the shared 2-core CI machine; the tiny lab alone takes seconds to a few minutes


def shot(page, name: str, full: bool = True) -> None:
    """Screenshot; `full` grows the viewport to the page's height first (Streamlit scrolls inside its main block)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # artifacts/ is git-ignored
    size = page.viewport_size
    if full:
        height = page.evaluate(
            "() => Math.max(document.body.scrollHeight, ...[...document.querySelectorAll("
            "'[data-testid=stMain],[data-testid=stMainBlockContainer]')].map(e => e.scrollHeight))")
        page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 9000)})
        page.wait_for_timeout(800)  # let plotly re-layout
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(size)


def wait_idle(page, timeout: int = 120_000) -> None:
    """Until Streamlit's script run finishes (the running indicator disappears)."""
    page.wait_for_timeout(300)
    page.locator("[data-testid=stStatusWidget]").filter(has_text=re.compile("Running|Stop")).wait_for(
        state="detached", timeout=timeout)


def go(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, level=1).wait_for()
    wait_idle(page)


def test_click_through_run_scorecard_and_export_svg(server, page, tiny_lab, tmp_path):
    url, store = server
    page.goto(url)
    page.get_by_role("heading", name="Workspace", level=1).wait_for(timeout=180_000)
    page.get_by_role("button", name=re.compile("Apply workspace")).wait_for()
    page.get_by_test_id("stDataFrame").first.wait_for()
    wait_idle(page)
    assert page.get_by_test_id("stSidebarNav").get_by_text("Behavioural scorecard").is_visible()
    shot(page, "01_workspace")

    # upload the lab's forget set with line 3 broken: the error names the line, keep the valid rows
    lines = (tiny_lab / "data" / "forget.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]
    bad = tmp_path / "forget_bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    forget_box = page.get_by_test_id("stRadio").filter(has_text="Forget set")
    forget_box.get_by_text("Upload", exact=True).click()
    wait_idle(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(bad))
    page.get_by_text(re.compile(r"rows rejected \(line 3\)")).wait_for()
    wait_idle(page)
    shot(page, "02_workspace_bad_row")
    page.get_by_text(f"Keep the {len(lines) - 1} valid rows").click()
    page.get_by_text(re.compile(f"{len(lines)} rows: {len(lines) - 1} valid")).wait_for()
    retain_box = page.get_by_test_id("stRadio").filter(has_text="Retain set")
    retain_box.get_by_text("None", exact=True).click()  # keeps the browser test quick
    wait_idle(page)
    page.get_by_role("button", name=re.compile("Apply workspace")).click()
    n = len(lab_workspace(tiny_lab).unlearned) + 2  # the original, every unlearned checkpoint, the reference
    page.get_by_text(re.compile(f"Workspace applied: {n} checkpoints")).wait_for(timeout=180_000)
    wait_idle(page)

    go(page, "Behavioural scorecard")
    run = page.get_by_role("button", name=re.compile("Run scorecard"))
    run.wait_for()
    shot(page, "03_scorecard_cold", full=False)
    run.click()
    page.get_by_test_id("stProgress").first.wait_for(timeout=60_000)
    shot(page, "04_scorecard_running", full=False)
    page.get_by_text(re.compile(r"Computed in [\d.]+ s")).wait_for(timeout=SCORECARD_TIMEOUT_MS)
    page.get_by_text("Per-item drill-down").wait_for()
    wait_idle(page)
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 9
    table = page.get_by_test_id("stDataFrame").first
    for name in ("original", "ga", "graddiff", "npo", "rmu", "suppressed_head", "retain_only"):
        assert page.get_by_test_id("stSidebar").get_by_text(name, exact=True).is_visible()
    assert table.is_visible()
    shot(page, "05_scorecard")

    # export the first chart as SVG through its own download button (bytes are rendered on click)
    first_svg = page.get_by_test_id("stDownloadButton").filter(has_text=re.compile(r"^\W*\w*\W*SVG$")).first
    with page.expect_download(timeout=120_000) as info:
        first_svg.click()
    download = info.value
    out = tmp_path / download.suggested_filename
    download.save_as(out)
    svg = out.read_text(encoding="utf-8")
    assert svg.lstrip().startswith(("<svg", "<?xml")), svg[:200]
    assert "Answer accuracy: forget set" in svg  # no retain set in this workspace
    assert download.suggested_filename.endswith(".svg")

    # every other page renders
    more = page.get_by_test_id("stSidebarNav").get_by_text(re.compile(r"View \d+ more"))
    if more.count():
        more.click()  # the sidebar folds long navigations: every page must be visited
    for link in page.get_by_test_id("stSidebarNav").locator("a").all():
        title = link.inner_text().strip().split("\n")[-1]
        if title in ("Workspace", "Behavioural scorecard"):
            continue
        go(page, title)
        assert not page.get_by_test_id("stException").count()
        shot(page, f"10_{re.sub(r'[^a-z]+', '_', title.lower())}")
    # the headline page: the scorecard is already in the store, so the default set runs the four probes
    go(page, "Suppression vs deletion")
    fast = page.get_by_role("button", name=re.compile("Run decodability"))
    fast.click()
    # this workspace has no retain set: the retain-trained probe says why it is skipped, the others run
    page.get_by_text(re.compile("Computed patching.*update_revert")).wait_for(timeout=SCORECARD_TIMEOUT_MS)
    page.get_by_text(re.compile("skipped: the decodability probe needs at least")).wait_for()
    page.get_by_text("Verdict per checkpoint").wait_for()
    page.get_by_text("Probe validity on the planted controls").first.wait_for()
    wait_idle(page)
    assert page.locator(".js-plotly-plot").count() >= 3
    page.get_by_text("Evidence sources in the results store").wait_for()
    assert not page.get_by_test_id("stException").count()
    shot(page, "06_verdict")

    go(page, "Workspace")
    assert not page.get_by_test_id("stException").count()
    # a reload (a fresh session) comes back to the applied workspace through the URL's ?ws=, not to the demo lab:
    # the uploaded forget set with its kept rows, no retain set
    assert re.search(r"[?&]ws=\w+", page.url), page.url
    page.reload()
    page.get_by_role("heading", name="Workspace", level=1).wait_for(timeout=180_000)
    wait_idle(page)
    page.get_by_test_id("stSidebar").get_by_text(re.compile(f"forget {len(lines) - 1} · retain 0 ·")).wait_for()
    assert not page.get_by_test_id("stException").count()


def test_stop_button_cancels_a_run_and_writes_nothing(server, page):
    """Click Run on a slow analysis, then its Stop button: the page says nothing was written, the store agrees,
    and the Run button is back; run again and it completes, its page zip holds every chart and table, and the
    headline page shows it as evidence."""

    url, store = server
    page.goto(url)
    page.get_by_role("heading", name="Workspace", level=1).wait_for(timeout=180_000)
    wait_idle(page)
    more = page.get_by_test_id("stSidebarNav").get_by_text(re.compile(r"View \d+ more"))
    if more.count():
        more.click()
    go(page, "SAE restoration")
    page.get_by_role("button", name="Run SAE restoration").click()
    stop = page.locator(".st-key-stop_sae_restoration button").first
    stop.wait_for(timeout=120_000)
    shot(page, "20_sae_running", full=False)
    stop.click()
    page.get_by_text(re.compile("Stopped. Nothing was written to the results store")).wait_for(timeout=120_000)
    wait_idle(page)
    # the Run button comes back once the stopped run's thread has ended (sae-lens's training loop checks for the
    # stop only between its own steps): wait for it as a person would, instead of reading it once
    page.get_by_role("button", name="Run SAE restoration").wait_for(state="visible", timeout=120_000)
    wait_idle(page)
    assert not page.get_by_test_id("stException").count()
    shot(page, "21_sae_stopped", full=False)
    if store.exists():
        with sqlite3.connect(store) as con:
            assert con.execute("SELECT count(*) FROM results WHERE analysis = 'sae_restoration'").fetchone()[0] == 0

    # after a Stop the same run completes and is stored
    page.get_by_role("button", name="Run SAE restoration").click()
    page.get_by_text(re.compile(r"Computed in [\d.]+ s")).wait_for(timeout=SCORECARD_TIMEOUT_MS)
    wait_idle(page)
    page.get_by_text(re.compile("SAE restoration dose-response")).first.wait_for()
    assert not page.get_by_test_id("stException").count()
    with sqlite3.connect(store) as con:
        assert con.execute("SELECT count(*) FROM results WHERE analysis = 'sae_restoration'").fetchone()[0] == 1
    shot(page, "22_sae_restoration")

    # the page zip: every chart in three formats and every table, rendered on click
    with page.expect_download(timeout=300_000) as info:
        page.get_by_test_id("stDownloadButton").filter(has_text="Download all charts and tables (zip)").click()
    z = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
    names = z.namelist()
    for fmt in ("svg", "pdf", "png"):
        assert len([n for n in names if n.startswith("figures/") and n.endswith(f".{fmt}")]) >= 2, names
    assert any(n.startswith("tables/") and n.endswith(".csv") for n in names), names
    assert any(b"SAE restoration dose-response" in z.read(n) for n in names if n.endswith(".svg"))

    # the headline page picks the stored restoration up as evidence and draws its curves
    go(page, "Suppression vs deletion")
    page.get_by_role("button", name=re.compile("Run scorecard")).click()
    page.get_by_text(re.compile("Computed scorecard")).wait_for(timeout=SCORECARD_TIMEOUT_MS)
    page.get_by_text("Restoration: steering the original's SAE features back in").wait_for()
    wait_idle(page)
    assert page.get_by_text(re.compile("SAE restoration dose-response")).count()
    assert not page.get_by_test_id("stException").count()
    shot(page, "23_verdict_with_restoration")
