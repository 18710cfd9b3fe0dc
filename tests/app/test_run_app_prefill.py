"""First start: scripts/run_app.sh fills the app's results store before serving, so the headline page shows
verdicts on its first visit without a click (issue: a researcher's first hour)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.app.apptest_helpers import frame, no_exception

REPO = Path(__file__).resolve().parents[2]


def test_run_app_prepares_the_headline_verdicts_before_the_first_visit(tiny_lab, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP, TIMEOUT

    lab = tmp_path / "lab"
    shutil.copytree(tiny_lab, lab, ignore=shutil.ignore_patterns("results.sqlite*", "first-audit"))
    store = tmp_path / "results.sqlite"
    env = {**os.environ, "UNLEARN_AUDIT_LAB_DIR": str(lab), "UNLEARN_AUDIT_LAB_CONFIG": "tiny",
           "UNLEARN_AUDIT_STORE": str(store), "OMP_NUM_THREADS": "1"}
    env.pop("UNLEARN_AUDIT_PREFILL", None)
    r = subprocess.run(["bash", str(REPO / "scripts" / "run_app.sh"), "--prepare-only"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "computing the headline page's evidence" in r.stdout
    assert (lab / "first-audit" / "report.json").is_file() and store.is_file()

    for k in ("UNLEARN_AUDIT_LAB_DIR", "UNLEARN_AUDIT_LAB_CONFIG", "UNLEARN_AUDIT_STORE"):
        monkeypatch.setenv(k, env[k])
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.run()
    app.switch_page("views/verdict.py").run()
    no_exception(app)
    # nothing left to run: the page read the store the script filled (same keys as the pages compute)
    assert app.button(key="run_verdict_fast").disabled
    verdicts = dict(zip(*frame(app, "model", "verdict")[["model", "verdict"]].T.values))
    assert verdicts["retrained"] == "deleted" and verdicts["suppressed_head"] == "suppressed", verdicts

    # the marker makes a second start instant: no second audit
    r = subprocess.run(["bash", str(REPO / "scripts" / "run_app.sh"), "--prepare-only"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "computing the headline page's evidence" not in r.stdout

    # an older install's first audit lacks a probe the evidence set has gained since (the update revert): the next
    # start audits again, so the headline page has it without a click
    report = lab / "first-audit" / "report.json"
    older = json.loads(report.read_text())
    del older["analyses"]["update_revert"]
    report.write_text(json.dumps(older))
    r = subprocess.run(["bash", str(REPO / "scripts" / "run_app.sh"), "--prepare-only"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "computing the headline page's evidence" in r.stdout, r.stderr[-3000:]
    assert "update_revert" in json.loads(report.read_text())["analyses"]

    # an install whose first audit ran with other default settings (here the decodability probe's older tolerance)
    # holds its results under other store keys: the next start audits again and records the current settings
    stamp = lab / "first-audit" / "defaults.json"
    current = json.loads(stamp.read_text())
    older = json.loads(stamp.read_text())
    older["decodability"]["tol"] = 1e-4
    stamp.write_text(json.dumps(older))
    r = subprocess.run(["bash", str(REPO / "scripts" / "run_app.sh"), "--prepare-only"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "computing the headline page's evidence" in r.stdout, r.stderr[-3000:]
    assert json.loads(stamp.read_text()) == current
