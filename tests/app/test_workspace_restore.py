"""Workspaces that persist: an applied workspace is saved in the app folder and named in the URL, so a fresh session
(a reload) with that URL comes back to it; a link whose workspace is gone says so and opens the demo lab; a saved
file loads on the workspace page; and a checkpoint keeps its colour across workspaces."""

from __future__ import annotations

import json
import re

import pytest

from tests.app.apptest_helpers import no_exception, texts
from tests.app.conftest import APP, TIMEOUT

pytestmark = pytest.mark.lab


def _chip_colours(at) -> dict[str, str]:
    """name -> swatch colour of the sidebar's checkpoint chips, as a person sees them (the reference's hatched
    swatch aside)."""
    html = "".join(str(m.value) for m in at.sidebar.markdown)
    return dict((n, c) for c, n in re.findall(r'background:(#[0-9A-Fa-f]{6})[^"]*"></span>([^<]+)</span>', html))


def _fresh(query: dict | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    return at


def test_applied_workspace_comes_back_on_reload_with_its_colours(app, app_env):
    full = _chip_colours(app)
    assert {"ga", "npo", "rmu"} <= set(full) and len(set(full.values())) == len(full)
    app.multiselect(key="lab_unlearned").set_value(["npo", "rmu"]).run()
    app.radio(key="src_retain").set_value("None").run()
    app.button(key="apply").click().run()
    no_exception(app)
    rid = app.query_params["ws"]
    assert (app_env.parent / "workspaces" / f"{rid}.json").exists()
    subset = _chip_colours(app)
    assert set(subset) == {"original", "npo", "rmu"}
    assert subset["npo"] == full["npo"] and subset["rmu"] == full["rmu"]  # by name, whatever the set around it

    reloaded = _fresh({"ws": rid})
    reloaded.run()
    no_exception(reloaded)
    ws = reloaded.session_state["workspace"]
    assert [n for n, _ in ws.spec.unlearned] == ["npo", "rmu"] and ws.spec.retain is None and ws.saved_id == rid
    assert _chip_colours(reloaded) == subset
    assert any("retain 0 ·" in str(c.value) for c in reloaded.sidebar.caption)

    gone = _fresh({"ws": "0123456789ab"})
    gone.run()
    no_exception(gone)
    assert any("could not be restored" in str(w.value) for w in gone.warning)
    assert len(gone.session_state["workspace"].spec.unlearned) > 2  # the demo lab


def test_a_saved_workspace_file_loads_on_the_workspace_page(app, tiny_lab):
    from unlearn_core.run.saved import workspace_record
    from unlearn_core.run.workspace import lab_workspace

    spec = lab_workspace(tiny_lab, unlearned=["ga", "suppressed_head"])
    record = workspace_record(spec, None, {"forget": "demo lab forget set"})
    app.toggle(key="ws_io").set_value(True).run()
    app.file_uploader(key="ws_load").set_value(("ws.json", json.dumps(record).encode(), "application/json")).run()
    no_exception(app)
    assert "Saved workspace loaded: 4 checkpoints (original, ga, suppressed_head, retain_only)" in texts(app)
    assert app.session_state["workspace"].spec == spec and app.query_params["ws"]
    broken = dict(record, original=str(tiny_lab / "no_such_model"))
    app.file_uploader(key="ws_load").set_value(("ws2.json", json.dumps(broken).encode(), "application/json")).run()
    assert any("Saved workspace not loaded" in str(e.value) and "no_such_model" in str(e.value) for e in app.error)
    assert app.session_state["workspace"].spec == spec  # the working one is kept
