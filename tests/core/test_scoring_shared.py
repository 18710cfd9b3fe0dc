"""Shared-prompt scoring: answers that share a prompt are scored on the prompt's KV cache, and must give the plain
pass's numbers (GPT-2: learned absolute positions; Llama: rotary positions), whatever the padding."""

from __future__ import annotations

import random

import pytest
import torch

from tests.fixtures.models import tiny_gpt2, tiny_llama
from unlearn_core.model import scoring
from unlearn_core.model.scoring import Encoded, score_encoded


def _gpt2():
    return tiny_gpt2()


def _llama():
    return tiny_llama()


def _items(seed: int = 0) -> list[Encoded]:
    """Prompts of 2-12 tokens with 1-6 answers each (answers of 0-5 tokens), shuffled, plus unshared prompts."""
    rng = random.Random(seed)
    out = []
    for _ in range(9):
        prompt = tuple(rng.randrange(2, 97) for _ in range(rng.randint(2, 12)))
        for _ in range(rng.randint(1, 6)):
            out.append(Encoded(prompt, tuple(rng.randrange(2, 97) for _ in range(rng.randint(0, 5)))))
    out.append(Encoded((5,), (6, 7)))  # a one-token prompt is never shared
    out.append(Encoded((5,), (8,)))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_shared_prompts_give_the_plain_numbers(make):
    model, items = make(), _items()
    assert scoring._prompt_groups(items)  # the sample really has shared prompts
    plain = score_encoded(model, items, pad_id=0, batch_size=7, with_stats=True)
    shared = score_encoded(model, items, pad_id=0, batch_size=7, with_stats=True, share_prompts=True)
    assert scoring._SHARING[model] is True  # the shortcut was used, not the fall-back
    # sigma = sqrt(E[lp^2] - mu^2) cancels: float rounding of the logits shows there at ~1e-4
    for name, tol in (("logprobs", 1e-5), ("mu", 1e-5), ("sigma", 1e-3)):
        for a, b in zip(getattr(plain, name), getattr(shared, name), strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=tol), name
    for a, b in zip(plain.correct, shared.correct, strict=True):
        assert torch.equal(a, b)
    assert any(len(e.answer_ids) == 0 for e in items) and any(lp.numel() == 0 for lp in shared.logprobs)


def test_the_shared_path_feeds_each_prompt_once():
    model, items = _gpt2(), _items(1)
    fed = []
    handle = model.register_forward_pre_hook(lambda _m, _a, kw: fed.append(kw["input_ids"].numel()),
                                             with_kwargs=True)
    try:
        scoring._SHARING[model] = True  # skip the one-off check: count the scoring passes alone
        score_encoded(model, items, pad_id=0, batch_size=1000, share_prompts=True)
        shared_tokens = sum(fed)
        fed.clear()
        score_encoded(model, items, pad_id=0, batch_size=1000)
    finally:
        handle.remove()
    assert shared_tokens < 0.75 * sum(fed)


def test_a_model_whose_shortcut_differs_is_scored_the_plain_way(monkeypatch):
    model, items = _gpt2(), _items(2)
    plain = score_encoded(model, items, pad_id=0)

    def wrong(model, encoded, groups, pad_id, batch_size, max_tokens, out):
        for g in groups:
            for i in g:
                out.put(i, torch.zeros(len(encoded[i].answer_ids), 97) if encoded[i].answer_ids else None,
                        encoded[i].answer_ids)

    monkeypatch.setattr(scoring, "_score_shared", wrong)
    got = score_encoded(model, items, pad_id=0, share_prompts=True)
    assert scoring._SHARING[model] is False
    assert all(torch.equal(a, b) for a, b in zip(plain.logprobs, got.logprobs))


def test_no_pass_holds_more_rows_than_the_batch_size():
    """A group runs as one batch, so groups larger than the batch are scored the plain way (memory bounds hold)."""
    model, items = _gpt2(), _items(3)
    rows = []
    handle = model.register_forward_pre_hook(lambda _m, _a, kw: rows.append(kw["input_ids"].shape[0]),
                                             with_kwargs=True)
    try:
        scoring._SHARING[model] = True
        for batch_size in (1, 3, 4):
            rows.clear()
            got = score_encoded(model, items, pad_id=0, batch_size=batch_size, share_prompts=True)
            assert max(rows) <= batch_size and all(lp is not None for lp in got.logprobs)
    finally:
        handle.remove()
