"""Workspace root in the app: a typed path outside UNLEARN_AUDIT_ROOT is refused on the page, Apply stays disabled,
and the refused folder or store file is never touched; network binding without a root serves nothing."""

from __future__ import annotations

import pytest

from tests.app.conftest import APP, TIMEOUT


@pytest.fixture()
def rooted(app_env, tiny_lab, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tiny_lab / "original")  # inside by name, outside once resolved
    monkeypatch.setenv("UNLEARN_AUDIT_ROOT", str(root))
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at, root


def test_paths_outside_the_root_are_refused_and_apply_is_disabled(rooted, tiny_lab, tmp_path):
    at, root = rooted
    at.radio(key="ckpt_source").set_value("Local folders").run()
    at.text_input(key="path_original").set_value(str(root / "escape")).run()
    at.text_area(key="paths_unlearned").set_value(f"ga={tiny_lab / 'ga'}").run()
    evil = tmp_path / "elsewhere" / "evil.sqlite"
    at.text_input(key="store_path").set_value(str(evil)).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = "\n".join(e.value for e in at.error)
    assert "Original checkpoint folder" in errors and "outside the workspace root" in errors, errors
    assert "Unlearned ga" in errors and "Results store" in errors, errors
    assert at.button(key="apply").disabled  # nothing can be applied, so no checkpoint is inspected or loaded
    assert at.session_state["workspace"].spec.original == str(tiny_lab / "original")  # the default is kept
    assert not evil.parent.exists()  # the refused store was never created


def test_paths_inside_the_root_are_accepted(rooted, tiny_lab):
    at, root = rooted
    import shutil

    for name in ("original", "ga"):
        shutil.copytree(tiny_lab / name, root / name)
    at.radio(key="ckpt_source").set_value("Local folders").run()
    at.text_input(key="path_original").set_value("original").run()  # relative to the root
    at.text_area(key="paths_unlearned").set_value("ga=ga").run()
    at.text_input(key="path_retain_only").set_value("").run()  # the prefilled demo-lab folder is outside the root
    at.text_input(key="store_path").set_value(str(root / "mine.sqlite")).run()
    assert not [e.value for e in at.error if "Refused" in e.value]
    at.button(key="apply").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ws = at.session_state["workspace"]
    assert ws.spec.original == str(root / "original") and dict(ws.spec.unlearned) == {"ga": str(root / "ga")}
    assert ws.store_path == str(root / "mine.sqlite")


def test_a_network_address_without_a_root_serves_nothing(app_env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("UNLEARN_AUDIT_ROOT", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    import streamlit

    real = streamlit.get_option
    monkeypatch.setattr(streamlit, "get_option", lambda k: "0.0.0.0" if k == "server.address" else real(k))
    at.run()
    errors = "\n".join(e.value for e in at.error)
    assert "Not serving" in errors and "without a workspace root" in errors, errors
    assert not at.title  # no page ran


def test_a_workspace_root_that_does_not_exist_serves_nothing(app_env, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("UNLEARN_AUDIT_ROOT", str(tmp_path / "typo"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = "\n".join(e.value for e in at.error)
    assert "Not serving" in errors and "is not an existing folder" in errors, errors
    assert not at.title
