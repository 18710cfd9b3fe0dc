"""Only the answer positions are projected onto the vocabulary: the same numbers as the full pass, fewer rows through
the output projection (GPT-2 and Llama), the full pass for a model from elsewhere, and a capture that stops after the
highest block it needs."""

from __future__ import annotations

import random

import pytest
import torch

from tests.fixtures.models import tiny_gpt2, tiny_llama
from unlearn_core.analyses.attribution.methods import answer_logprob_sum
from unlearn_core.model import scoring
from unlearn_core.model.forward import answer_logprob_sums
from unlearn_core.model.hooks import capture_block_outputs
from unlearn_core.model.scoring import Encoded, kept_logits, score_encoded


def _gpt2():
    return tiny_gpt2(n_layer=3)


def _llama():
    return tiny_llama(n_layer=3)


class _Wrapped(torch.nn.Module):
    """A causal LM from outside transformers (custom code): no logits_to_keep, so the full pass."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()


def _items(n: int = 24, seed: int = 0) -> list[Encoded]:
    rng = random.Random(seed)
    return [Encoded(tuple(rng.randrange(2, 97) for _ in range(rng.randint(3, 14))),
                    tuple(rng.randrange(2, 97) for _ in range(rng.randint(1, 5)))) for _ in range(n)]


def _projected_rows(model):
    """A counter of the rows the output projection sees (a forward pre-hook on it)."""
    seen = []
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else model.inner.lm_head
    handle = head.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].reshape(-1, inp[0].shape[-1]).shape[0]))
    return seen, handle


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_scoring_projects_only_answer_tokens_with_the_full_pass_numbers(make):
    model, items = make(), _items()
    seen, handle = _projected_rows(model)
    try:
        kept = score_encoded(model, items, pad_id=0, batch_size=8, with_stats=True)
    finally:
        handle.remove()
    assert sum(seen) == sum(len(e.answer_ids) for e in items)  # the old pass projected every padded position
    full = score_encoded(_Wrapped(model), items, pad_id=0, batch_size=8, with_stats=True)
    for name in ("logprobs", "mu", "sigma"):
        for a, b in zip(getattr(kept, name), getattr(full, name), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(kept.correct, full.correct, strict=True))


def test_a_model_from_elsewhere_gets_the_full_pass():
    model = _Wrapped(_gpt2())
    assert not scoring._takes_keep_mask(model)
    seen, handle = _projected_rows(model)
    items = _items(6)
    try:
        score_encoded(model, items, pad_id=0, batch_size=8)
    finally:
        handle.remove()
    width = max(len(e.ids) for e in items)
    assert sum(seen) == len(items) * width


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_gradients_through_kept_logits_match_the_full_pass(make):
    """Integrated gradients and relearning differentiate through the kept positions only: same sums, same input
    gradients and weight gradients as through the full logits."""
    model, items = make(), _items(8, seed=1)
    model.requires_grad_(True)
    grads = {}
    for only in (False, True):
        model.zero_grad()
        sums, lens = answer_logprob_sums(model, items, 0, answers_only=only)
        (-(sums / lens)).mean().backward()
        grads[only] = (sums.detach(), lens, [p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(grads[True][0], grads[False][0], atol=1e-5, rtol=1e-5)
    assert torch.equal(grads[True][1], grads[False][1])
    for a, b in zip(grads[True][2], grads[False][2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)

    ids, mask = scoring.right_pad([e.ids for e in items], 0, "cpu")
    labels = torch.full_like(ids, -100)
    for r, e in enumerate(items):
        p, a = len(e.prompt_ids), len(e.answer_ids)
        labels[r, p - 1: p + a - 1] = torch.tensor(e.answer_ids)
    torch.testing.assert_close(answer_logprob_sum(ids, mask, labels, model).detach(), grads[False][0], atol=1e-5,
                               rtol=1e-5)


def test_kept_logits_equal_the_selected_full_logits():
    model = _llama()
    ids = torch.randint(2, 97, (3, 9))
    mask = torch.ones_like(ids)
    keep = torch.zeros_like(ids, dtype=torch.bool)
    keep[0, 2], keep[1, 5:8], keep[2, -1] = True, True, True
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(kept_logits(model, keep, input_ids=ids, attention_mask=mask), full[keep])


def test_a_capture_without_logits_stops_after_its_highest_block():
    model = _gpt2()
    ran = []
    blocks = model.transformer.h
    handles = [b.register_forward_hook(lambda _m, _i, _o, k=k: ran.append(k)) for k, b in enumerate(blocks)]
    seen, head = _projected_rows(model)
    ids = torch.randint(2, 97, (2, 7))
    try:
        states = capture_block_outputs(model, ids, torch.ones_like(ids), [1])
        assert ran == [0, 1] and seen == [] and list(states) == [1]
        ran.clear()
        states, logits = capture_block_outputs(model, ids, torch.ones_like(ids), [1], with_logits=True)
        assert ran == [0, 1, 2] and logits.shape == (2, 7, 97)
    finally:
        for h in (*handles, head):
            h.remove()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    torch.testing.assert_close(states[1], out.hidden_states[2])


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_answer_scores_equal_per_item_scores_from_the_full_logits(make):
    """Steering and patching score a batch with one softmax over every answer token: each item's mean log-prob and
    all-argmax flag are those of its own span of the full logits (an empty answer: NaN, not right)."""
    from unlearn_core.model.forward import answer_scores

    model = make()
    items = [*_items(10, seed=2), Encoded((5, 6, 7), ())]
    ids, mask = scoring.right_pad([e.ids for e in items], 0, "cpu")
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
    # two items' labels become the argmax of the same pass (same ids fed), so "every token the argmax" is true there
    for r in (0, 3):
        p, a = len(items[r].prompt_ids), len(items[r].answer_ids)
        items[r] = Encoded(items[r].prompt_ids, tuple(full[r, p - 1: p + a - 1].argmax(-1).tolist()))
    with torch.no_grad():
        lp, right = answer_scores(model, items, ids, mask)
        full = model(input_ids=ids, attention_mask=mask).logits
    for r, e in enumerate(items):
        p, a = len(e.prompt_ids), len(e.answer_ids)
        if not a:
            assert torch.isnan(lp[r]) and not right[r]
            continue
        span = full[r, p - 1: p + a - 1]
        want = torch.log_softmax(span, -1).gather(1, torch.tensor(e.answer_ids)[:, None]).mean()
        torch.testing.assert_close(lp[r], want, atol=1e-5, rtol=1e-5)
        assert bool(right[r]) == bool((span.argmax(-1) == torch.tensor(e.answer_ids)).all())
    assert right[0] and right[3] and not right.all()


def test_a_model_spread_over_devices_gets_its_mask_on_the_cpu():
    """device_map="auto" leaves the final hidden states on the last block's device: a mask on the input device could
    not index them, a CPU mask indexes a tensor anywhere. (On a CPU-only machine every tensor is on the CPU: this
    checks which models count as spread, and that one still gets its kept logits.)"""
    model = _gpt2()
    seen = []
    model.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw["logits_to_keep"]), with_kwargs=True)
    ids = torch.randint(2, 97, (2, 6))
    keep = torch.zeros_like(ids, dtype=torch.bool)
    keep[:, -2:] = True
    assert not scoring._spread(model)
    model.hf_device_map = {"transformer.wte": 0, "transformer.h.0": 0, "transformer.h.1": 1, "lm_head": 1}
    assert scoring._spread(model)
    with torch.no_grad():
        out = kept_logits(model, keep, input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.shape == (4, 97) and seen[-1].device.type == "cpu"
    model.hf_device_map = {"": "cpu"}
    assert not scoring._spread(model)
