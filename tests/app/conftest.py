"""AppTest fixtures: the app pointed at the tiny demo lab through its environment variables, with a fresh store."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 900  # seconds per script run: the scorecard shares 2 CPU cores with everything else in CI


@pytest.fixture()
def app_env(tiny_lab, tmp_path, monkeypatch) -> Path:
    """Env vars the app reads: tiny lab, tiny config, a per-test results store (so every test starts cold)."""
    store = tmp_path / "results.sqlite"
    monkeypatch.setenv("UNLEARN_AUDIT_LAB_DIR", str(tiny_lab))
    monkeypatch.setenv("UNLEARN_AUDIT_LAB_CONFIG", "tiny")
    monkeypatch.setenv("UNLEARN_AUDIT_STORE", str(store))
    return store


@pytest.fixture()
def app(app_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
