"""Prompt attribution and keyword-emphasis recovery against planted ground truth."""

from __future__ import annotations

import copy
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from unlearn_core.analyses.attribution import (
    AttributionConfig,
    adaptive_integrated_gradients,
    compute_attribution,
    integrated_gradients,
    keyword_mask,
    leave_one_out,
    prompt_layout,
)
from unlearn_core.analyses.keyword_recovery import (
    KeywordEmphasisConfig,
    attributed_keywords,
    compute_keyword_emphasis,
    emphasise,
    recovery_rate,
)
from unlearn_core.analyses.registry import get_spec
from unlearn_core.evidence.calibration import CONTROL_HOLDOUT, CONTROL_REFERENCE, calibrate
from unlearn_core.model.scoring import Encoded, score_encoded
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import LoadedModel, ModelSet

# ---------------------------------------------------------------- a model whose answer depends on ONE prompt token

N_KEYS, N_DIST = 6, 6
KEY0, DIST0, SEP, ANS0, PAD = 0, N_KEYS, N_KEYS + N_DIST, N_KEYS + N_DIST + 1, N_KEYS + N_DIST + 1 + 2 * N_KEYS


def _example(rng: random.Random) -> tuple[list[int], list[int]]:
    """prompt = [key, 2-4 distractors, SEP]; the two answer tokens are a function of the key alone."""
    k = rng.randrange(N_KEYS)
    prompt = [KEY0 + k] + [DIST0 + rng.randrange(N_DIST) for _ in range(rng.randint(2, 4))] + [SEP]
    return prompt, [ANS0 + k, ANS0 + N_KEYS + (k + 1) % N_KEYS]


@pytest.fixture(scope="module")
def key_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    rng = random.Random(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=PAD + 1, n_positions=16, n_embd=32, n_layer=1, n_head=2,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                       bos_token_id=None, eos_token_id=None))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(250):
        seqs = [sum(_example(rng), []) for _ in range(32)]
        width = max(map(len, seqs))
        ids = torch.tensor([s + [PAD] * (width - len(s)) for s in seqs])
        labels = ids.clone()
        labels[ids == PAD] = -100
        for r, s in enumerate(seqs):  # train the answer only: the prompt is random by design
            labels[r, : len(s) - 2] = -100
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = [_example(rng) for _ in range(12)]
    prompts, answers = [p for p, _ in test], [a for _, a in test]
    sc = score_encoded(model, [Encoded(tuple(p), tuple(a)) for p, a in test], PAD)
    assert float(sc.accuracy().mean()) == 1.0, "the planted model must have learned key -> answer"
    attributable = [[t != SEP for t in p] for p in prompts]
    return model, prompts, answers, attributable


def test_loo_puts_the_deciding_token_first(key_model):
    model, prompts, answers, att = key_model
    lp, contrib = leave_one_out(model, PAD, prompts, answers, att)
    assert np.all(lp > np.log(0.5))
    for p, c in zip(prompts, contrib):
        assert int(np.argmax(c)) == 0, (p, c)
        assert c[0] > 2 * np.max(np.abs(c[1:]))  # far above any distractor
        assert c[-1] == 0.0  # SEP is not attributable


def test_integrated_gradients_ranks_the_key_first_and_is_complete(key_model):
    model, prompts, answers, att = key_model
    attr, delta = integrated_gradients(model, PAD, prompts, answers, att, n_steps=128, batch_tokens=4096)
    # completeness: sum of attributions = F(x) - F(baseline), F = summed answer log-prob, baseline = PAD at prompt
    full = score_encoded(model, [Encoded(tuple(p), tuple(a)) for p, a in zip(prompts, answers)], PAD)
    base = score_encoded(model, [Encoded(tuple(PAD if ok else t for t, ok in zip(p, m)), tuple(a))
                                 for p, a, m in zip(prompts, answers, att)], PAD)
    for i, (a, p) in enumerate(zip(attr, prompts)):
        gap = float(full.logprobs[i].sum() - base.logprobs[i].sum())
        assert a.sum() == pytest.approx(gap, abs=0.02 + 0.01 * abs(gap))
        assert abs(delta[i]) < 0.02 + 0.01 * abs(gap)
        assert int(np.argmax(a)) == 0, (p, a)
        assert a[-1] == 0.0


def test_adaptive_ig_refines_only_the_prompts_that_miss_completeness(key_model):
    """Every prompt either meets max(atol, rtol * |F(x) - F(b)|) or used the most steps; a refined prompt's numbers
    are those of a plain IG call at its step count; prompts that met the tolerance early were not refined."""
    model, prompts, answers, att = key_model
    rtol, atol = 0.002, 0.002  # tight, so the first pass of 4 steps cannot satisfy every prompt
    attr, delta, steps = adaptive_integrated_gradients(model, PAD, prompts, answers, att, n_steps=4,
                                                       max_steps=64, rtol=rtol, atol=atol, batch_tokens=4096)
    assert set(steps) <= {4, 8, 16, 32, 64} and len(set(steps)) > 1, steps  # adaptive, not one count for all
    for a, d, k in zip(attr, delta, steps):
        assert k == 64 or abs(d) <= max(atol, rtol * abs(a.sum() - d)), (k, d, a.sum())
    for k in set(steps):
        idx = [i for i, s in enumerate(steps) if s == k]
        plain, plain_d = integrated_gradients(model, PAD, [prompts[i] for i in idx], [answers[i] for i in idx],
                                              [att[i] for i in idx], n_steps=k, batch_tokens=4096)
        for j, i in enumerate(idx):
            assert np.allclose(attr[i], plain[j], atol=1e-5) and delta[i] == pytest.approx(plain_d[j], abs=1e-5)
            if k > 4:  # refined because the previous count missed the tolerance
                prev_a, prev_d = integrated_gradients(model, PAD, [prompts[i]], [answers[i]], [att[i]],
                                                      n_steps=k // 2, batch_tokens=4096)
                assert abs(prev_d[0]) > max(atol, rtol * abs(prev_a[0].sum() - prev_d[0]))
    # a fixed count: max_steps == n_steps gives plain IG
    _, _, fixed = adaptive_integrated_gradients(model, PAD, prompts, answers, att, n_steps=8, max_steps=8)
    assert set(fixed) == {8}
    with pytest.raises(ValueError, match="ig_max_steps"):
        AttributionConfig(ig_steps=64, ig_max_steps=32)


def test_romberg_ig_reuses_every_point_and_matches_a_fine_rule(key_model, monkeypatch):
    """Nested grids: a prompt refined to k intervals cost exactly k + 1 path points (Gauss-Legendre: 8 + 16 + ...);
    every prompt meets the tolerance or used the most intervals; the attributions agree with 256-step IG."""
    from unlearn_core.analyses.attribution import methods

    model, prompts, answers, att = key_model
    points = []
    real = methods.integrated_gradients

    def counting(model_, pad, ps, *args, **kwargs):
        n = args[2] if len(args) > 2 else kwargs["n_steps"]
        points.append(n * len(ps))
        return real(model_, pad, ps, *args, **kwargs)

    monkeypatch.setattr(methods, "integrated_gradients", counting)
    rtol, atol = 0.002, 0.002
    attr, delta, steps = methods.romberg_integrated_gradients(model, PAD, prompts, answers, att, n_steps=8,
                                                              max_steps=64, rtol=rtol, atol=atol, batch_tokens=4096)
    monkeypatch.undo()
    assert set(steps) <= {8, 16, 32, 64} and len(set(steps)) > 1, steps  # adaptive
    assert sum(points) == sum(k + 1 for k in steps)  # no point evaluated twice
    for a, d, k in zip(attr, delta, steps):
        assert k == 64 or abs(d) <= max(atol, rtol * abs(a.sum() - d)), (k, d, a.sum())
    fine, _ = real(model, PAD, prompts, answers, att, n_steps=256, batch_tokens=4096)
    for a, f in zip(attr, fine):
        assert np.abs(a - f).sum() <= 0.02 * np.abs(f).sum() + 1e-3, (a, f)
        assert int(np.argmax(a)) == 0
    with pytest.raises(ValueError, match="even"):
        methods.romberg_integrated_gradients(model, PAD, prompts, answers, att, n_steps=5)
    with pytest.raises(ValueError, match="ig_rule"):
        AttributionConfig(ig_rule="simpson")


def test_zero_baseline_is_complete(key_model):
    model, prompts, answers, att = key_model
    attr, delta = integrated_gradients(model, PAD, prompts[:4], answers[:4], att[:4], n_steps=128,
                                       baseline="zero")
    assert max(abs(d) for d in delta) < 0.05
    assert all(int(np.argmax(a)) == 0 for a in attr)


# -------------------------------------------------------------------------------------------- the demo lab


@pytest.fixture(scope="module")
def lab(tiny_lab):
    ws = lab_workspace(tiny_lab, unlearned=["suppressed_head"], device="cpu")
    return ws.load_models(), ws.load_data()


def test_word_grouping_and_keywords(lab):
    models, data = lab
    tok = models.original.tokenizer
    it = data.forget[0]
    prompt = data.prompt_format.prompt(it)
    ids, tokens, word_index, words, in_scope, att, offsets = prompt_layout(tok, prompt, it.question, "question")
    assert "".join(tokens) == prompt
    for kw in it.keywords:
        assert kw in words  # sub-words of a name come back as one word
        mask = keyword_mask(prompt, offsets, [kw], att)
        assert mask.any() and "".join(t for t, m in zip(tokens, mask) if m).strip() == kw
    assert not in_scope[0] and not in_scope[-1]  # "Question" and the final ":" belong to the template


def test_identical_models_give_zero_difference_and_mismatch_raises(lab):
    models, data = lab
    twin = LoadedModel("twin", "unlearned", copy.deepcopy(models.original.model), models.original.tokenizer,
                       models.original.path, models.original.hash)
    ms = ModelSet(models.original, {"twin": twin, "suppressed_head": models.unlearned["suppressed_head"]})
    cfg = AttributionConfig(max_items=3, ig_steps=8, ig_max_steps=8, splits=("forget",))
    res = compute_attribution(ms, data, cfg)
    diff = res.difference("twin")
    for it in diff.items:
        for m in ("loo", "ig"):
            (c,) = it.contributions[m].values()
            assert np.array_equal(c, np.zeros_like(c))
    sub = res - res
    assert all(not np.any(c) for it in sub.items for d in it.contributions.values() for c in d.values())
    # the suppressed head really changed the contributions
    assert np.abs(res.difference("suppressed_head").items[0].contributions["loo"]["suppressed_head - original"]
                  ).sum() > 0.1
    # a result over other prompts (different tokens) cannot be subtracted
    shifted = replace(res, items=(replace(res.items[0], token_ids=res.items[1].token_ids,
                                          tokens=res.items[1].tokens), *res.items[1:]))
    with pytest.raises(ValueError, match="tokens or targets differ"):
        res - shifted
    # the original's key tokens carry most of its attribution; KeyShare is a share
    items = res.items_frame()
    assert items.key_share.between(0, 1).all()
    assert items[(items.model == "original") & (items.method == "loo")].spearman.eq(1.0).all()
    back = decode_result(encode_result(res))
    assert (back - res).items[0].contributions["loo"]["original"].sum() == 0.0


def test_retain_control_is_an_even_sample_the_size_of_the_forget_set(lab):
    """Retain is the collateral-damage control: by default as many prompts as forget (at least 32), spread evenly
    over the retain set, each keeping its own index and file line; retain_items overrides the size."""
    from unlearn_core.analyses.attribution.compute import MIN_RETAIN, split_items

    models, data = lab
    assert len(data.retain) > MIN_RETAIN >= len(data.forget)  # the tiny lab: 20 forget, 100 retain
    chosen = split_items(data, "retain", AttributionConfig())
    idx = [i for i, _ in chosen]
    assert len(idx) == MIN_RETAIN and idx[0] == 0 and idx[-1] == len(data.retain) - 1 and idx == sorted(set(idx))
    assert max(np.diff(idx)) - min(np.diff(idx)) <= 1  # evenly spread, not the first 32 (one entity's facts)
    assert [i for i, _ in split_items(data, "forget", AttributionConfig())] == list(range(len(data.forget)))
    assert len(split_items(data, "retain", AttributionConfig(retain_items=len(data.retain) + 5))) == len(data.retain)
    assert [i for i, _ in split_items(data, "retain", AttributionConfig(max_items=5))] == list(range(5))
    res = compute_attribution(models, data, AttributionConfig(methods=("loo",), retain_items=6))
    kept = [(it.item, it.line) for it in res.items if it.split == "retain"]
    want = split_items(data, "retain", AttributionConfig(retain_items=6))
    assert kept == [(i, it.line) for i, it in want] and len(kept) == 6
    assert sum(it.split == "forget" for it in res.items) == len(data.forget)


def test_keyword_emphasis_scores_and_no_false_recovery_on_the_reference(lab):
    """On the TOFU-protocol lab emphasis recovers little from any checkpoint (the probe-validity table: it does not
    separate the planted controls); what must hold is that the deletion reference gets no real recovery from it."""
    models, data = lab
    res = compute_keyword_emphasis(models, data, KeywordEmphasisConfig(generate=False))
    s = res.summary.set_index("model")
    assert s.loc["retain_only", "recovery_p"] < 0.15 and s.loc["suppressed_head", "recovery_p"] >= 0
    assert np.isnan(s.loc["original", "recovery_p"])
    scores = res.scores("suppressed_head")
    assert scores["kw_recovery_p_retain_only"] == s.loc["retain_only", "recovery_p"]


def test_keyword_evidence_is_best_variant_per_item_with_holdout(lab):
    models, data = lab
    spec = get_spec("keyword_recovery")
    (ev,) = spec.evidence
    assert (ev.key, ev.control) == ("keyword_recovery", "reference+holdout")
    res = spec.compute(models, data, KeywordEmphasisConfig(variants=("repeat", "focus"), generate=False))
    # holdout keywords are the holdout items' own keywords (the same rule as forget items)
    assert res.keywords["holdout"] == [list(it.keywords) for it in data.holdout]
    items = spec.evidence_items(res)[ev.key]
    t = res.scores_table
    for split, n in (("forget", len(data.forget)), ("holdout", len(data.holdout))):
        for m in ("original", "suppressed_head", "retain_only"):
            plain, att = getattr(items, f"{split}_plain")[m], getattr(items, f"{split}_attacked")[m]
            assert plain.shape == att.shape == (n,), (split, m)
            mine = t[(t.model == m) & (t.split == split)]
            best = mine[mine.variant.isin(["repeat", "focus"])].groupby("item").p.max().sort_index()
            assert np.array_equal(att, best.to_numpy())  # the best variant per item, plain excluded
            assert np.array_equal(plain, mine[mine.variant == "plain"].sort_values("item").p.to_numpy())
    s = res.summary.set_index("model")
    assert items.holdout_attacked["retain_only"].mean() == pytest.approx(s.loc["retain_only", "holdout_p_attacked"])
    assert items.forget_attacked["suppressed_head"].mean() == pytest.approx(
        s.loc["suppressed_head", "forget_p_attacked"])
    ref = calibrate(items, "suppressed_head", "original", "retain_only", ev.control)
    hold = calibrate(items, "retain_only", "original", None, ev.control)
    assert (ref.control, hold.control) == (CONTROL_REFERENCE, CONTROL_HOLDOUT)
    from tests.fixtures.levels import expected_levels

    # post-attack levels in units of the original's lead over the control (the analysis's own recovery_p is the
    # checkpoint's climb from its own floor: a different number)
    assert (ref.raw, ref.control_value, ref.excess) == pytest.approx(
        expected_levels(items, "suppressed_head", "original", "retain_only"))
    assert (hold.raw, hold.control_value, hold.excess) == pytest.approx(
        expected_levels(items, "retain_only", "original"))
    for e in (ref, hold):
        assert e.lo <= e.excess <= e.hi
    back = decode_result(encode_result(res)).evidence_items()[ev.key]
    assert all(np.array_equal(back.holdout_attacked[m], items.holdout_attacked[m]) for m in models.all())


def test_attributed_keywords_are_the_question_words_the_original_leans_on(lab):
    models, data = lab
    o = models.original
    items = data.forget[:8]
    found = attributed_keywords(o.model, o.tokenizer, items, data.prompt_format, 3, 64)
    for it, kws in zip(items, found):
        assert len(kws) == 3 and all(k in it.question.split() or k in it.question for k in kws)
        assert kws == sorted(kws, key=it.question.index)  # question order
    # under the original, the entity's name carries the answer: it is among the top words for most items
    named = [any(k in (it.concept or "").split() for k in kws) for it, kws in zip(items, found)]
    assert sum(named) >= 6, found
    res = compute_keyword_emphasis(models, replace(data, forget=items, retain=data.retain[:4], holdout=()),
                                   KeywordEmphasisConfig(keywords="attribution", generate=False))
    assert res.keywords["forget"] == found


def test_emphasis_variants_and_recovery_formula():
    q, kws = "Where was Ada Lovelace born?", ["Ada", "Lovelace", "born"]
    assert emphasise(q, kws, "mark") == "Where was *Ada* *Lovelace* *born*?"
    assert emphasise(q, kws, "focus").endswith("Focus on: Ada, Lovelace, born.")
    assert emphasise(q, kws, "repeat").startswith("Ada Lovelace born. ")
    assert emphasise(q, kws, "define").startswith("Key terms: Ada, Lovelace, born. ")
    assert recovery_rate(0.5, 0.1, 0.9) == pytest.approx(0.5)
    assert recovery_rate(0.05, 0.1, 0.9) == 0.0 and recovery_rate(2.0, 0.1, 0.9) == 1.0
    assert np.isnan(recovery_rate(0.5, 0.9, 0.9))
    with pytest.raises(ValueError):
        AttributionConfig(target="nope")
    with pytest.raises(ValueError):
        KeywordEmphasisConfig(variants=("shout",))
