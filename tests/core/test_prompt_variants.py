"""Prompt-variant probe: the prompts an attacker sends (no forget answer in them, the audit's format, seeded), the
multiple-choice reading's units, and its per-item evidence on the tiny demo lab."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from unlearn_core.analyses.common.probes import split_scores
from unlearn_core.analyses.prompt_variants import (
    BEST,
    EVIDENCE,
    MC,
    VARIANTS,
    PromptVariantsConfig,
    compute_prompt_variants,
)
from unlearn_core.analyses.prompt_variants.plots import plot_multiple_choice, plot_prompt_variants
from unlearn_core.analyses.prompt_variants.prompts import (
    CHAT_SHOT,
    answer_pattern,
    choice_prompts,
    distinct_parts,
    few_shot_pairs,
    paraphrase_pairs,
    prime_pairs,
    shot_pool,
)
from unlearn_core.analyses.registry import get_spec
from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.evidence.calibration import CONTROL_HOLDOUT, CONTROL_REFERENCE, calibrate
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _items(n: int, prefix: str, para: bool = True) -> list[QAItem]:
    return [QAItem(f"Where does {prefix}{i} live?", f"{prefix}town{i}", paraphrased_answer=f"{prefix}{i} lives in "
                   f"{prefix}town{i}.", perturbed_answers=tuple(f"{prefix}{i} lives in wrong{i}{j}." for j in range(3)),
                   paraphrased_question=f"What is the home of {prefix}{i}?" if para else None) for i in range(n)]


# ------------------------------------------------------------------------------------------------ prompts (text)


def test_few_shot_context_is_retain_pairs_and_never_a_forget_answer():
    forget, holdout = _items(6, "f"), _items(4, "h")
    retain = _items(12, "r")
    # two retain pairs that happen to state a forget / holdout answer: never drawn
    retain[3] = QAItem("Who visited ftown2?", "nobody")
    retain[7] = QAItem("Where is r7 from?", "htown1")
    pool = shot_pool(retain, [it.answer for it in forget + holdout])
    assert 3 not in pool and 7 not in pool and len(pool) == 10
    fmt = PromptFormat()
    pairs, used = few_shot_pairs(forget, retain, pool, fmt, 3, 0, "forget")
    for it, (prompt, answer), shots in zip(forget, pairs, used):
        assert len(shots) == 3 and set(shots) <= set(pool)
        context = prompt[: prompt.rindex(fmt.prompt(it))]
        assert all(f.answer not in context for f in forget + holdout)  # no forget (or holdout) answer in the context
        assert all(f"{retain[s].question}\nAnswer: {retain[s].answer}" in context for s in shots)
        assert prompt.endswith(fmt.prompt(it)) and answer == fmt.answer(it.answer)
    again, used_again = few_shot_pairs(forget, retain, pool, fmt, 3, 0, "forget")
    other, used_other = few_shot_pairs(forget, retain, pool, fmt, 3, 1, "forget")
    assert again == pairs and used_again == used and used_other != used  # by the seed only
    # scoring the retain split: an item is never its own shot
    _, used_r = few_shot_pairs(retain, retain, pool, fmt, 3, 0, "retain")
    assert all(i not in shots for i, shots in enumerate(used_r))


def test_chat_format_variants_render_through_the_template():
    fmt = PromptFormat.chat_format(system_prompt="Be brief.", chat_template=CHAT)
    forget, retain = _items(3, "f"), _items(8, "r")
    pairs, used = few_shot_pairs(forget, retain, list(range(8)), fmt, 2, 0, "forget")
    prompt, answer = pairs[0]
    shots = "".join(CHAT_SHOT.format(question=retain[s].question, answer=retain[s].answer) + "\n\n" for s in used[0])
    assert prompt == fmt.prompt(shots + forget[0].question)  # the pairs inside the one user message
    assert prompt.startswith("<|system|>Be brief.\n<|user|>") and prompt.endswith("<|assistant|>")
    assert answer == forget[0].answer  # the chat format's answer follows the generation prompt directly
    para = paraphrase_pairs(forget, fmt)[0]
    assert para == (fmt.prompt("What is the home of f0?"), "ftown0")
    prime = prime_pairs(forget, fmt, "Sure, here is the answer:")[0]
    assert prime == (fmt.prompt(forget[0]) + "Sure, here is the answer:", " ftown0")
    mc = choice_prompts(forget, fmt, 0, "forget")[0]
    assert mc.prompt.startswith("<|system|>") and mc.letters == ("A", "B", "C", "D")


def test_paraphrase_and_prime_skip_what_they_cannot_ask():
    fmt = PromptFormat()
    items = _items(2, "f", para=False) + _items(2, "g")
    assert [p is None for p in paraphrase_pairs(items, fmt)] == [True, True, False, False]
    # an answer the prime itself states is never primed (the prefix must carry no answer text)
    items.append(QAItem("What is the word?", "answer"))
    primed = prime_pairs(items, fmt, "Sure, here is the answer:")
    assert primed[-1] is None and all(p is not None for p in primed[:-1])
    prompt, answer = primed[0]
    assert prompt == "Question: Where does f0 live?\nAnswer: Sure, here is the answer:" and answer == " ftown0"
    assert answer_pattern(["town"]).search("a town.") and not answer_pattern(["town"]).search("downtown")


def test_multiple_choice_is_seeded_with_one_gold_option_and_chance_one_over_n():
    fmt = PromptFormat()
    items = _items(40, "f")
    items[5] = dataclasses.replace(items[5], perturbed_answers=())  # nothing to choose from: skipped
    items[6] = dataclasses.replace(items[6], perturbed_answers=("x", "y"))  # gold + 2
    mc = choice_prompts(items, fmt, 0, "forget")
    assert mc[5] is None and mc[6].chance == pytest.approx(1 / 3) and len(mc[6].letters) == 3
    golds = [c.gold for c in mc if c is not None]
    assert len(set(golds)) == 4  # the gold letter moves with the seeded shuffle, not always "A"
    assert [c.gold for c in choice_prompts(items, fmt, 0, "forget") if c] == golds
    assert [c.gold for c in choice_prompts(items, fmt, 1, "forget") if c] != golds
    c = mc[0]
    assert c.chance == 0.25 and c.letters == (" A", " B", " C", " D")
    gold_line = f"{'ABCD'[c.gold]}. ftown0"  # the paraphrased answer's distinct part: same form as the distractors
    assert gold_line in c.prompt and c.prompt.count("wrong0") == 3
    assert distinct_parts(["X was born in Zorvik.", "X was born in Quenmar."]) == ["Zorvik", "Quenmar"]
    assert distinct_parts(["Paris", "Paris."]) == ["Paris", "Paris."]  # cutting would make two equal


def test_config_refuses_bad_settings():
    for bad in ({"k_shots": -1}, {"prime": "  "}, {"seed": 1.5}, {"multiple_choice": 1}, {"batch_size": 0}):
        with pytest.raises((ValueError, TypeError)):
            PromptVariantsConfig(**bad)


# ------------------------------------------------------------------------------------------------ on the tiny lab


@pytest.fixture(scope="module")
def lab(tiny_lab):
    ws = lab_workspace(tiny_lab, unlearned=["suppressed_head", "retrained"])
    models, data = ws.load_models(), ws.load_data()
    data = AuditData(data.forget, data.retain, data.holdout, data.prompt_format)
    return models, data, compute_prompt_variants(models, data, PromptVariantsConfig(max_retain=24))


def test_evidence_is_the_best_variant_per_item_aligned_with_the_items(lab):
    models, data, res = lab
    spec = get_spec("prompt_variants")
    assert spec.evidence == (EVIDENCE,) and EVIDENCE.axis == "recoverable" and not EVIDENCE.counted and EVIDENCE.why_not
    assert EVIDENCE.control == "reference+holdout" and not spec.default_evidence
    items = spec.evidence_items(res)[EVIDENCE.key]
    assert items.forget_index is None and items.holdout_index is None  # every item, in order
    for split, plain, attacked, n in (("forget", items.forget_plain, items.forget_attacked, len(data.forget)),
                                      ("holdout", items.holdout_plain, items.holdout_attacked, len(data.holdout))):
        assert set(plain) == set(attacked) == set(models.all())
        for m in models.all():
            table = res.items[split][m]
            assert plain[m].shape == attacked[m].shape == (n,) and np.isfinite(attacked[m]).all()
            stack = np.stack([table[v] for v in VARIANTS])
            np.testing.assert_array_equal(attacked[m], np.nanmax(stack, 0))  # the attacker's best prompt per item
            np.testing.assert_array_equal(plain[m], table["plain"])
    ref = calibrate(items, "suppressed_head", "original", "retain_only", EVIDENCE.control)
    own = calibrate(items, "retrained", "original", None, EVIDENCE.control)
    assert ref.control == CONTROL_REFERENCE and own.control == CONTROL_HOLDOUT
    assert ref.lo <= ref.excess <= ref.hi and own.lo <= own.excess <= own.hi


def test_variant_scores_are_the_plain_scorer_on_the_variant_prompt(lab):
    """One batched pass over all variants gives each item the number the probes' scorer gives that prompt alone."""
    models, data, res = lab
    lm = models.unlearned["suppressed_head"]
    para = [dataclasses.replace(it, question=it.paraphrased_question) for it in data.forget]
    p, _ = split_scores(lm.model, lm.tokenizer, para, data.prompt_format)
    np.testing.assert_allclose(res.items["forget"]["suppressed_head"]["paraphrase"], p.double().numpy(), atol=1e-6)
    p, _ = split_scores(lm.model, lm.tokenizer, data.holdout, data.prompt_format)
    np.testing.assert_allclose(res.items["holdout"]["suppressed_head"]["plain"], p.double().numpy(), atol=1e-6)


def test_the_original_answers_the_variants_where_the_reference_cannot(lab):
    """Planted truth: the original knows the forget facts, the retain-only reference never saw them. Asked the same
    variant prompts, the original's best p~ is well above the reference's, item by item (the tiny lab's 1M-parameter
    model generalises poorly to unseen question forms: its paraphrased p~ is far below its plain p~)."""
    _, _, res = lab
    orig, ref = res.items["forget"]["original"], res.items["forget"]["retain_only"]
    assert orig[BEST].mean() > 2 * ref[BEST].mean()
    assert (orig[BEST] > ref[BEST]).mean() >= 0.8
    assert orig["prime"].mean() > 2 * ref["prime"].mean()
    for v in ("paraphrase", "few_shot"):  # weaker on this model, still above
        assert orig[v].mean() > ref[v].mean(), v
    # on the holdout split (facts neither ever learned) no such lead
    ho, hr = res.items["holdout"]["original"], res.items["holdout"]["retain_only"]
    assert abs(ho[BEST].mean() - hr[BEST].mean()) < 0.5 * (orig[BEST].mean() - ref[BEST].mean())


def test_multiple_choice_reads_gold_letter_mass_normalised_over_the_letters(lab):
    """With every next token equally likely, each letter's probability is V^-(its token count): the gold mass is
    exactly that normalised over the options, 1/n (chance) where every letter is one token. The lab's tokenizer
    writes " A" as two tokens (" ", "A"), so the plain format shows the normalisation of a multi-token letter and a
    format without the space (letters "A".."D", one token each) shows chance."""
    models, data, res = lab
    assert res.choice_frame().set_index(["model", "split"]).loc[("original", "forget"), "chance"] == 0.25
    flat = copy.deepcopy(models.original.model)
    with torch.no_grad():
        flat.get_output_embeddings().weight.zero_()  # every next token equally likely: no option preferred
        flat.get_output_embeddings().bias = None
    o = models.original
    uniform = ModelSet(o, {"flat": LoadedModel("flat", "unlearned", flat, o.tokenizer, o.path, "flat")})
    vocab = flat.get_output_embeddings().weight.shape[0]
    for fmt in (data.prompt_format, PromptFormat(data.prompt_format.template, "")):
        d = AuditData(data.forget, (), data.holdout, fmt)
        out = compute_prompt_variants(uniform, d, PromptVariantsConfig(max_retain=0, k_shots=0))
        choices = choice_prompts(list(d.forget), fmt, 0, "forget")
        n_tok = {x: len(o.tokenizer(x, add_special_tokens=False)["input_ids"]) for x in choices[0].letters}
        want = [float(vocab ** -n_tok[c.letters[c.gold]] / sum(vocab ** -n_tok[x] for x in c.letters))
                for c in choices]
        np.testing.assert_allclose(out.items["forget"]["flat"][MC], want, rtol=1e-4)
        if len(set(n_tok.values())) == 1:
            np.testing.assert_allclose(out.items["forget"]["flat"][MC], 0.25, atol=1e-6)
    assert set(n_tok.values()) == {1}  # the second format was the one-token case
    rows = res.choice_frame().set_index(["model", "split"])
    assert rows.loc[("original", "forget"), "gold_mass"] > rows.loc[("original", "holdout"), "gold_mass"]


def test_identical_models_give_exactly_zero_difference_and_results_round_trip(lab):
    models, data, res = lab
    o = models.original
    twin = ModelSet(o, {"copy": LoadedModel("copy", "unlearned", o.model, o.tokenizer, o.path, "copy")})
    out = compute_prompt_variants(twin, data, PromptVariantsConfig(max_retain=8, multiple_choice=False))
    for v in ("plain", *VARIANTS, BEST):
        np.testing.assert_array_equal(out.items["forget"]["copy"][v], out.items["forget"]["original"][v])
    assert (out.to_frame().query("model == 'copy' and attack != 'plain'").recovery_p.fillna(0) == 0).all()
    back = decode_result(encode_result(res))
    assert back.to_frame().equals(res.to_frame()) and back.choice_frame().equals(res.choice_frame())
    assert back.config == res.config and back.shots == res.shots
    np.testing.assert_array_equal(back.items["forget"]["original"][BEST], res.items["forget"]["original"][BEST])


def test_tables_scores_and_charts(lab):
    models, _, res = lab
    spec = get_spec("prompt_variants")
    tables = spec.tables(res)
    summary = tables["prompt_variants_summary"]
    assert set(summary.attack) == {"plain", *VARIANTS, BEST}
    assert set(summary.model) == set(models.all())
    s = summary.set_index(["model", "attack"])
    assert s.loc[("suppressed_head", BEST), "control"] == "retain-only reference"
    assert s.loc[("retain_only", BEST), "control"] == "holdout split"
    scores = spec.scores(res, "suppressed_head")
    assert scores["prompt_variants_recovery_best"] == s.loc[("suppressed_head", BEST), "recovery_p"]
    assert 0 <= scores["prompt_variants_mc_gold_mass"] <= 1
    assert {"prompt_variants", "prompt_variants_mc"} == set(spec.plots(res))
    fig = plot_prompt_variants(res, "level_excess")
    assert {t.name for t in fig.data} == set(models.all()) - {"original"}
    assert len(plot_multiple_choice(res).data) == len(models.all())
    ex = tables["prompt_variants_examples"].set_index("variant")
    assert "Sure, here is the answer:" in ex.loc["prime", "prompt"]
