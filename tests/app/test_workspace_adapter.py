"""The workspace page takes a LoRA adapter folder as an unlearned checkpoint and says what it is."""

from __future__ import annotations

import pytest

from tests.app.apptest_helpers import no_exception
from tests.fixtures.checkpoints import train_lora_ga

pytestmark = pytest.mark.lab


def test_workspace_applies_an_adapter_and_describes_it(app, tiny_lab, tmp_path):
    adapter = tmp_path / "lora"
    train_lora_ga(tiny_lab, adapter, steps=4, lr=3e-3)
    app.radio(key="ckpt_source").set_value("Local folders").run()
    app.text_input(key="path_original").input(str(tiny_lab / "original")).run()
    app.text_area(key="paths_unlearned").input(f"lora={adapter}").run()
    app.button(key="apply").click().run()
    no_exception(app)
    assert not app.error, [str(e.value) for e in app.error]
    assert [n for n, _ in app.session_state["workspace"].spec.unlearned] == ["lora"]
    flash = " ".join(str(s.value) for s in app.success)
    assert "lora: LoRA rank 4 on " in flash and str(tiny_lab / "original") in flash, flash


def test_workspace_memory_budget_is_checked_then_applied(app, tiny_lab):
    """The page's memory budget is the CLI's --max-memory: a malformed one blocks Apply with the reason; a valid one
    reaches the applied workspace and the models load within it (a CPU-only budget here)."""
    app.radio(key="ckpt_source").set_value("Local folders").run()
    app.text_input(key="path_original").input(str(tiny_lab / "original")).run()
    app.text_input(key="max_memory").input("cpu=lots").run()
    assert "is not a size like 70GiB" in " ".join(str(e.value) for e in app.error)
    assert app.button(key="apply").disabled
    app.text_input(key="max_memory").input("cpu=4GiB").run()
    assert not app.error and not app.button(key="apply").disabled
    app.button(key="apply").click().run()
    no_exception(app)
    assert not app.error, [str(e.value) for e in app.error]
    assert app.session_state["workspace"].spec.max_memory == (("cpu", 4 * 2**30),)
    assert app.text_input(key="max_memory").value == "cpu=4GiB"  # shown back as it was applied


def test_checkpoints_that_do_not_fit_are_loaded_one_at_a_time(app, tiny_lab, monkeypatch):
    """Free memory for the original and one other checkpoint only: the workspace still applies, says so, and a page's
    analysis runs on checkpoints loaded as it reaches them."""
    import torch

    from tests.app.apptest_helpers import texts
    from unlearn_core.checkpoints import memory
    from unlearn_core.run import workspace as ws

    infos = ws.lab_workspace(tiny_lab, unlearned=["ga", "rmu"]).inspect()
    per = max(int(b * 1.2) for b in memory.weight_bytes(infos, torch.float32).values())
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(3.5 * per / 0.8))
    app.multiselect(key="lab_unlearned").set_value(["ga", "rmu"]).run()
    app.radio(key="src_retain").set_value("None").run()
    app.button(key="apply").click().run()
    no_exception(app)
    flash = " ".join(str(s.value) for s in app.success)
    assert "Workspace applied: 4 checkpoints" in flash and "at most 2 of 4 are kept at once" in flash, flash
    app.switch_page("views/scorecard.py").run()
    app.number_input(key="sc_max_new").set_value(8).run()
    app.button(key="run_scorecard").click().run()
    no_exception(app)
    assert "Computed in" in texts(app)


def test_a_new_memory_plan_reloads_the_checkpoints_a_new_data_file_does_not(tiny_lab):
    from dataclasses import replace

    from unlearn_core.run.workspace import lab_workspace
    from views._shared.state import spec_key

    spec = lab_workspace(tiny_lab)
    assert spec_key(replace(spec, max_memory="cpu=4GiB")) != spec_key(spec)
    assert spec_key(replace(spec, resident=2)) != spec_key(spec)
    assert spec_key(replace(spec, retain=None)) == spec_key(spec)
