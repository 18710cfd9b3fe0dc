"""The real app under `streamlit run` on a free port, pointed at the tiny demo lab, and a headless Chromium page.

Debian's /usr/bin/chromium is driven directly (never `playwright install`: no downloads); the tests are skipped with
a clear reason only when that browser is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


def start_server(env_overrides: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str, object]:
    port = free_port()
    env = {**os.environ, **env_overrides, "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "w")  # noqa: SIM115 - closed by stop_server
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}", log


def stop_server(proc: subprocess.Popen, log) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture()
def server(tiny_lab, tmp_path):
    """(base url, results-store path) of a running app on the tiny lab; terminated at the end of the test."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    store = tmp_path / "results.sqlite"
    # a fresh SAE cache: an SAE restoration run trains its SAE (~15 s), so a test can click Stop while it runs; with
    # the SAE served from a shared cache the run took 2 s and one CI run finished it before the Stop click
    proc, url, log = start_server({"UNLEARN_AUDIT_LAB_DIR": str(tiny_lab), "UNLEARN_AUDIT_LAB_CONFIG": "tiny",
                                   "UNLEARN_AUDIT_STORE": str(store), "UNLEARN_AUDIT_CACHE": str(tmp_path / "cache")},
                                  tmp_path / "streamlit.log")
    try:
        wait_healthy(url, proc)
        yield url, store
    finally:
        stop_server(proc, log)
        print((tmp_path / "streamlit.log").read_text()[-3000:])


@pytest.fixture()
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()
