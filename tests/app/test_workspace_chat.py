"""The workspace page's "Use the checkpoint's chat template" switch and system prompt: a checkpoint with a template
gets its prompts rendered through it (the template read from the original's folder), one without is refused with
the reason, never silently audited with a plain template."""

from __future__ import annotations

import shutil

import pytest

from tests.app.apptest_helpers import no_exception

pytestmark = pytest.mark.lab

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _folders(app, original: str, unlearned: str) -> None:
    app.radio(key="ckpt_source").set_value("Local folders").run()
    app.text_input(key="path_original").input(original).run()
    app.text_area(key="paths_unlearned").input(f"ga={unlearned}").run()


def test_the_chat_template_switch_renders_prompts_with_the_originals_template(app, tiny_lab, tmp_path):
    original = tmp_path / "original"
    shutil.copytree(tiny_lab / "original", original)
    (original / "chat_template.jinja").write_text(CHATML)
    _folders(app, str(original), str(tiny_lab / "ga"))
    assert app.text_input(key="system_prompt").disabled and not app.text_input(key="prompt_template").disabled
    app.checkbox(key="use_chat_template").check().run()
    assert not app.text_input(key="system_prompt").disabled and app.text_input(key="prompt_template").disabled
    app.text_input(key="system_prompt").input("Be brief.").run()
    app.button(key="apply").click().run()
    no_exception(app)
    assert not app.error, [str(e.value) for e in app.error]
    ws = app.session_state["workspace"]
    fmt = ws.spec.prompt_format
    assert fmt.chat and fmt.system_prompt == "Be brief." and fmt.chat_template == CHATML
    assert ws.data.prompt_format == fmt
    q = ws.data.forget[0].question
    assert fmt.prompt(q) == f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n" \
                            "<|im_start|>assistant\n"


def test_the_switch_on_a_checkpoint_without_a_template_is_refused_with_the_reason(app, tiny_lab):
    before = app.session_state["workspace"].spec
    _folders(app, str(tiny_lab / "original"), str(tiny_lab / "ga"))
    app.checkbox(key="use_chat_template").check().run()
    app.button(key="apply").click().run()
    no_exception(app)
    errors = " ".join(str(e.value) for e in app.error)
    assert "has no chat template" in errors and "Use the checkpoint's chat template" in errors, errors
    assert app.session_state["workspace"].spec == before  # the previous workspace is kept
