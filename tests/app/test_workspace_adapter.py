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
