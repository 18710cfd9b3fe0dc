"""Time from `streamlit run app.py` to the first rendered scorecard, cold (empty results store: the scorecard is
computed after one click on "Run scorecard") and warm (store filled: served from it), in headless Chromium.

    python tests/browser/measure_startup.py --lab-dir .lab/test/lab-tiny-9b048caa2746 --config tiny
    python tests/browser/measure_startup.py --lab-dir .lab/default --config default

Not a test (no timing assertions in tests); prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CHROMIUM, CHROMIUM_ARGS, start_server, stop_server, wait_healthy  # noqa: E402


def measure(lab_dir: str, config: str, store: Path, mode: str, log: Path) -> dict:
    from playwright.sync_api import sync_playwright

    t0 = time.perf_counter()
    proc, url, fh = start_server({"UNLEARN_AUDIT_LAB_DIR": lab_dir, "UNLEARN_AUDIT_LAB_CONFIG": config,
                                  "UNLEARN_AUDIT_STORE": str(store)}, log)
    marks = {}
    try:
        wait_healthy(url, proc)
        marks["server_up"] = time.perf_counter() - t0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(1_800_000)
            page.goto(url + "/scorecard")
            page.get_by_role("heading", name="Behavioural scorecard", level=1).wait_for()
            marks["page_shown"] = time.perf_counter() - t0
            if mode == "cold":
                page.get_by_role("button", name=re.compile("Run scorecard")).click()
                marks["run_clicked"] = time.perf_counter() - t0
            page.get_by_text("Per-item drill-down").wait_for()
            page.locator(".js-plotly-plot").first.wait_for()
            marks["scorecard_rendered"] = time.perf_counter() - t0
            browser.close()
    finally:
        stop_server(proc, fh)
    return {"mode": mode, "lab": lab_dir, **{k: round(v, 1) for k, v in marks.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lab-dir", required=True)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--store", default=None, help="results store to use (default: a new temporary file)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="unlearn-audit-timing-"))
    store = Path(args.store) if args.store else tmp / "results.sqlite"
    for mode in ("cold", "warm"):
        print(json.dumps(measure(str(Path(args.lab_dir).resolve()), args.config, store, mode,
                                 tmp / f"{mode}.log")), flush=True)


if __name__ == "__main__":
    main()
