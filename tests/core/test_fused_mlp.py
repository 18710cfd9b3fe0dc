"""GPT-2's MLP runs c_fc + tanh-GELU as one oneDNN call in inference, and the plain modules everywhere else."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM

from unlearn_core.model import arch, fused_mlp
from unlearn_core.run.workspace import lab_workspace

pytestmark = pytest.mark.skipif(not fused_mlp.available(), reason="this torch has no oneDNN")


def _fused_calls(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if "_linear_pointwise" in e.key)


@pytest.fixture(scope="module")
def pair(tiny_lab):
    """(the model as the audit loads it, the same weights with transformers' own modules)."""
    loaded = lab_workspace(tiny_lab, unlearned=["ga"]).load_models().original.model
    plain = AutoModelForCausalLM.from_pretrained(tiny_lab / "original").eval()
    return loaded, plain


def _ids(model, seed=0):
    return torch.randint(2, model.config.vocab_size, (8, 17), generator=torch.Generator().manual_seed(seed))


def test_loaded_gpt2_fuses_every_mlp_and_matches_the_plain_model(pair):
    loaded, plain = pair
    n = arch.n_layers(loaded)
    assert sum(type(m) is fused_mlp.FusedGPT2MLP for m in loaded.modules()) == n
    assert set(loaded.state_dict()) == set(plain.state_dict())
    ids = _ids(plain)
    with torch.no_grad():
        want = plain(input_ids=ids).logits
        assert _fused_calls(lambda: loaded(input_ids=ids)) == n  # one fused call per block
        got = loaded(input_ids=ids).logits
        assert _fused_calls(lambda: loaded(input_ids=ids[:2])) == 0  # 34 rows: a decoding step's size, plain path
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_the_backward_takes_the_plain_path_with_the_same_gradient(pair):
    """Integrated gradients differentiates through the MLP: the fused op has no backward, so it must not be used."""
    loaded, plain = pair
    ids = _ids(plain, 1)
    grads = []
    for model in (plain, loaded):
        emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)

        def run(model=model, emb=emb):
            out = model(inputs_embeds=emb).logits.log_softmax(-1)[:, -1, 5].sum()
            grads.append(torch.autograd.grad(out, emb)[0])

        assert _fused_calls(run) == 0
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-5)  # NewGELU vs GELUTanh: rounding only


def test_in_place_weight_edits_and_hooks_are_seen(pair):
    """Perturbation, quantization and the update revert edit weights in place; concept-vector ablation hooks MLP
    modules. The fused path reads the weight at every call, and a hook on c_fc or the GELU sends the call the
    plain way."""
    loaded, plain = pair
    ids = _ids(plain, 2)
    work, ref = copy.deepcopy(loaded), copy.deepcopy(plain)
    assert type(arch.decoder_layers(work)[0].mlp) is fused_mlp.FusedGPT2MLP  # a deep copy keeps the class
    with torch.no_grad():
        for m in (work, ref):
            arch.decoder_layers(m)[0].mlp.c_fc.weight.mul_(-0.5)
        assert torch.allclose(work(input_ids=ids).logits, ref(input_ids=ids).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(work(input_ids=ids).logits, loaded(input_ids=ids).logits, atol=1e-3)
        seen = []
        handle = arch.decoder_layers(work)[1].mlp.act.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        try:
            n = arch.n_layers(work)
            assert _fused_calls(lambda: work(input_ids=ids)) == n - 1
        finally:
            handle.remove()
    assert seen == [torch.Size([8, 17, work.config.n_inner or 4 * work.config.n_embd])]
