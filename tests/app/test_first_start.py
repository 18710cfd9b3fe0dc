"""README's first command opens the app with nothing configured: the demo lab is built on first start, then reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.apptest_helpers import texts as _texts
from unlearn_core.lab.build import default_lab_dir

pytestmark = pytest.mark.lab

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 900



def test_first_start_builds_the_demo_lab_then_reuses_it(tmp_path, monkeypatch):
    monkeypatch.delenv("UNLEARN_AUDIT_LAB_DIR", raising=False)
    monkeypatch.delenv("UNLEARN_AUDIT_STORE", raising=False)
    monkeypatch.setenv("UNLEARN_AUDIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UNLEARN_AUDIT_LAB_CONFIG", "tiny")  # the same code path as "default", built in seconds
    lab = default_lab_dir("tiny")
    assert str(lab).startswith(str(tmp_path)) and not lab.exists()

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "First start: building the demo lab" in _texts(at)
    meta = json.loads((lab / "lab.json").read_text())
    assert meta["config"] == "tiny" and set(meta["checkpoints"]) >= {"original", "retain_only", "suppressed_head"}
    shown = [df for df in (e.value for e in at.dataframe) if "checkpoint" in getattr(df, "columns", [])]
    assert shown and "suppressed_head" in shown[0]["checkpoint"].tolist()

    again = AppTest.from_file(APP, default_timeout=TIMEOUT)
    again.run()
    assert not again.exception
    assert "First start" not in _texts(again)
