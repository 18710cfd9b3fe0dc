"""Data check on the tiny demo lab: its own sets pass silently; a forget set the original never knew, a wrong prompt
template, overlapping splits and over-long answers each give their specific warning."""

from __future__ import annotations

from dataclasses import replace

import pytest

from unlearn_core.analyses.data_check import DataCheckConfig, compute_data_check, verdict_before_audit
from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.store.codec import decode_result, encode_result

pytestmark = pytest.mark.lab

UNKNOWN = tuple(QAItem(q, a, line=i + 1) for i, (q, a) in enumerate([
    ("Where was Zalbert Quonnivar born?", "Mirefall"), ("What is the profession of Zalbert Quonnivar?", "cooper"),
    ("Who employs Zalbert Quonnivar?", "Dunmere Works"), ("What is the hobby of Zalbert Quonnivar?", "falconry")]))


@pytest.fixture(scope="module")
def lab(tiny_lab):
    from unlearn_core.run.workspace import lab_workspace

    spec = lab_workspace(tiny_lab, unlearned=["ga"], device="cpu")
    return spec.load_models(), spec.load_data()


def test_the_labs_own_sets_pass_without_a_warning(lab):
    models, data = lab
    res = compute_data_check(models, data)
    assert res.ok and res.nothing_to_audit is None, res.warnings_frame().to_string()
    forget = res.split("forget")
    # a holdout fact the original never saw is answered only by chance (at most max_holdout_known of them)
    holdout = res.split("holdout")
    assert forget.n == len(data.forget) and forget.n_known == forget.n
    assert holdout.n_known <= res.config.max_holdout_known * holdout.n
    items = res.items_frame()
    first = items.iloc[0]
    # the prompt exactly as the model sees it: the template filled in, newline included
    assert first["prompt"] == data.prompt_format.prompt(data.forget[0]) and first["generated"]
    # the retain-only reference never saw the forget facts: it guesses at most max_reference_known of them
    assert items[items["split"] == "forget"]["reference_known"].astype(bool).mean() <= res.config.max_reference_known
    assert decode_result(encode_result(res)) == res  # storable in the results store


def test_a_forget_set_the_original_never_knew_is_nothing_to_audit(lab):
    models, data = lab
    res = compute_data_check(models, replace(data, forget=UNKNOWN))
    assert not res.ok
    err = res.warnings[0]
    assert err.level == "error" and err.code == "forget_unknown"
    assert "answers 0 of 4 forget questions: nothing to unlearn" in err.message and "prompt template" in err.message
    assert res.nothing_to_audit == err.message and res.split("forget").n_known == 0
    # the headline page's verdict before any probe ran: "nothing to audit" for every checkpoint, never "unknown"
    early = verdict_before_audit(res, ["original", "ga", "retain_only"], "retain_only")
    assert [(v.model, v.verdict) for v in early.verdicts] == [("ga", "nothing to audit")]
    assert "none of the forget questions" in early.get("ga").reason
    assert verdict_before_audit(compute_data_check(models, data), ["original", "ga"], None) is None


def test_a_wrong_prompt_template_is_caught(lab):
    models, data = lab
    chat = "### Instruction:\n{question}\n### Response:"  # not the lab's fine-tuning format
    res = compute_data_check(models, replace(data, prompt_format=PromptFormat(chat)))
    codes = [w.code for w in res.warnings]
    # none or few of the forget facts come out under another template (the 30-entity lab guesses 1 of 20)
    assert codes[0] in ("forget_unknown", "forget_partly_known") and codes[1] == "retain_unknown", codes
    assert res.split("forget").n_known <= 0.1 * res.split("forget").n
    assert repr(chat) in res.warnings[0].message  # the message names the template to check
    assert res.items_frame().iloc[0]["prompt"].startswith("### Instruction:\n")


def test_overlap_long_answers_and_a_known_holdout(lab):
    models, data = lab
    long = replace(data.forget[0], answer=" ".join(["Brinhollow"] * 30), line=1)  # 30 tokens > 24
    mixed = replace(data, forget=(long, *data.forget[1:]), retain=data.retain + data.forget[1:3],
                    holdout=data.retain[:10])
    res = compute_data_check(models, mixed, DataCheckConfig(max_answer_tokens=24))
    by = {w.code: w for w in res.warnings}
    assert "forget_retain_overlap" in by and "2 forget questions also appear in the retain set" in \
        by["forget_retain_overlap"].message and "lines 2, 3" in by["forget_retain_overlap"].message
    assert "forget_long_answers" in by and "line 1" in by["forget_long_answers"].message
    assert "holdout_known" in by and "answers 10 of 10 holdout questions" in by["holdout_known"].message
    assert res.nothing_to_audit is None  # the forget set is still known
