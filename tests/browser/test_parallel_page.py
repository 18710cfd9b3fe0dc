"""The headline page's Run button computes in worker processes under `streamlit run` (issue 33: the dashboard's runs
use the machine as the CLI does), and the numbers are the ones of one process.

Spawned workers would re-run Streamlit's __main__ (the page script) if it were left in place; here the page must show
its verdicts and the results must sit in the store under the keys the CLI plans: a CLI audit on that store loads no
checkpoint, and its CSVs are byte-equal to a one-process CLI audit on a fresh store."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager

import pytest

from tests.browser.conftest import start_server, stop_server, wait_healthy
from tests.browser.test_browser import SCORECARD_TIMEOUT_MS, go, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.lab]


@contextmanager
def headline_run_in_two_processes(page, tiny_lab, tmp_path):
    """The app under `streamlit run` with UNLEARN_AUDIT_JOBS=2, on the headline page, its default evidence's Run
    button clicked; yields the server process; stopped after."""
    proc, url, log = start_server({"UNLEARN_AUDIT_LAB_DIR": str(tiny_lab), "UNLEARN_AUDIT_LAB_CONFIG": "tiny",
                                   "UNLEARN_AUDIT_STORE": str(tmp_path / "results.sqlite"),
                                   "UNLEARN_AUDIT_CACHE": str(tmp_path / "cache"), "UNLEARN_AUDIT_JOBS": "2"},
                                  tmp_path / "streamlit.log")
    try:
        wait_healthy(url, proc)
        page.goto(url)
        page.get_by_role("heading", name="Workspace", level=1).wait_for(timeout=180_000)
        wait_idle(page)
        go(page, "Suppression vs deletion")
        page.get_by_role("button", name=re.compile("Run scorecard")).click()
        yield proc
    finally:
        stop_server(proc, log)


def test_headline_run_in_two_worker_processes_equals_one_process(page, tiny_lab, tmp_path):
    from unlearn_core.cli import main

    store = tmp_path / "results.sqlite"
    with headline_run_in_two_processes(page, tiny_lab, tmp_path):
        page.get_by_text(re.compile(r"Computed .*relearning in 2 processes")).wait_for(timeout=SCORECARD_TIMEOUT_MS)
        page.get_by_text("Verdict per checkpoint").wait_for()
        wait_idle(page)
        assert not page.get_by_test_id("stException").count()
        assert not page.get_by_text(re.compile("failed in its worker process")).count()
    served = tmp_path / "served"
    assert main(["audit", "--lab", str(tiny_lab), "--out", str(served), "--store", str(store), "--jobs", "1"]) == 0
    assert json.loads((served / "report.json").read_text())["provenance"]["models_loaded"] is False
    fresh = tmp_path / "fresh"
    assert main(["audit", "--lab", str(tiny_lab), "--out", str(fresh), "--store", str(tmp_path / "fresh.sqlite"),
                 "--jobs", "1"]) == 0
    tables = sorted(p.name for p in served.glob("*.csv"))
    assert {"verdicts.csv", "evidence.csv", "scorecard_items.csv", "relearning_curve.csv"} <= set(tables), tables
    for name in tables:
        assert (served / name).read_bytes() == (fresh / name).read_bytes(), name


def test_stop_ends_the_worker_processes(page, tiny_lab, tmp_path):
    """Stop during a run in worker processes: the page says it stopped, and no worker of the server is left running
    (they are terminated, not waited for)."""
    import psutil

    with headline_run_in_two_processes(page, tiny_lab, tmp_path) as proc:
        page.get_by_text(re.compile(r"analyses in 2 processes")).first.wait_for(timeout=SCORECARD_TIMEOUT_MS)
        server = psutil.Process(proc.pid)
        assert any("spawn_main" in " ".join(c.cmdline()) for c in server.children(recursive=True))
        page.get_by_role("button", name="Stop").first.click()
        page.get_by_text(re.compile("Stopped. Nothing was written to the results store for the analyses")).wait_for(
            timeout=120_000)
        wait_idle(page)
        workers = [c for c in server.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        assert not page.get_by_test_id("stException").count()
