"""Guided extraction's per-item verdict evidence on the tiny demo lab.

The guided decoder contains the original, so the evidence is controlled only by the retain-only reference decoded
the same way; guiding the original by itself is plain greedy decoding (the identity attack).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearn_core.analyses import registry
from unlearn_core.analyses.extraction import SPEC, ExtractionConfig, compute_extraction, guided_greedy
from unlearn_core.evidence.calibration import CONTROL_NONE, CONTROL_REFERENCE, calibrate
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result
from unlearn_core.types import AuditData

CFG = ExtractionConfig(weights=(0.0, 1.0), retain=False, max_new_tokens=8)


@pytest.fixture(scope="module")
def lab(tiny_lab):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ws = lab_workspace(tiny_lab, unlearned=["suppressed_head"])
    models, data = ws.load_models(), ws.load_data()
    data = AuditData(data.forget[:8], (), data.holdout, data.prompt_format)
    yield models, data, compute_extraction(models, data, CFG)
    torch.set_num_threads(threads)


def test_guiding_the_original_by_itself_is_greedy_decoding(lab):
    models, data, _ = lab
    o = models.original
    prompts = [data.prompt_format.pair(it)[0] for it in data.forget]
    for w in (1.0, 3.0):
        assert guided_greedy(o.model, o.model, o.tokenizer, prompts, w, 5.0, 8, 4) == \
            guided_greedy(o.model, None, o.tokenizer, prompts, 0.0, 5.0, 8, 4)


@pytest.mark.parametrize("which", ["tiny_lab", "tiny_llama_lab"])
def test_kv_cache_decodes_what_the_full_prefix_decodes(which, request):
    """The cached decoder (one new token per step) gives the uncached one's generations, plain and guided, with
    rows of different lengths in a batch and rows that stop early (GPT-2 and Llama modules)."""
    ws = lab_workspace(request.getfixturevalue(which), unlearned=["suppressed_head", "ga"])
    models, data = ws.load_models(), ws.load_data()
    o = models.original
    prompts = [data.prompt_format.pair(it)[0] for it in (*data.forget, *data.retain[:8])]
    calls = []
    real = o.model.forward

    def counting(*a, **k):
        calls.append(k["input_ids"].shape[1])
        return real(*a, **k)

    for lm in models.unlearned.values():
        for unl, w in ((None, 0.0), (lm.model, 1.0), (lm.model, 3.0)):
            base = lm.model if unl is None else o.model
            full = guided_greedy(base, unl, o.tokenizer, prompts, w, 5.0, 12, 8, kv_cache=False)
            assert guided_greedy(base, unl, o.tokenizer, prompts, w, 5.0, 12, 8) == full
            assert any(g.strip() for g in full)
    try:
        o.model.forward = counting
        guided_greedy(o.model, None, o.tokenizer, prompts[:4], 0.0, 5.0, 6, 4)
    finally:
        del o.model.forward
    assert calls[0] > 1 and set(calls[1:]) == {1}  # the prompt once, then one token per step


def test_evidence_items_are_aligned_with_the_forget_split(lab):
    models, data, res = lab
    items = decode_result(encode_result(res)).evidence_items()["extraction_recovery"]
    assert items.metric == "ROUGE-L recall" and items.holdout_plain == {}
    assert set(items.forget_plain) == set(items.forget_attacked) == set(models.all())
    for m in ("original", "suppressed_head", "retain_only"):
        assert items.forget_plain[m].shape == items.forget_attacked[m].shape == (len(data.forget),)
        assert ((items.forget_plain[m] >= 0) & (items.forget_plain[m] <= 1)).all()
    np.testing.assert_array_equal(items.forget_attacked["original"], items.forget_plain["original"])
    gens = res.generations_frame()
    for m in ("suppressed_head", "retain_only"):  # attacked = the generations of this model's headline weight
        a = res.headline_attack(m)
        rec = {r["attack"]: r["recovery_rougeL"] for r in res.summary if r["model"] == m and r["attack"] != "plain"}
        assert set(rec) == {"w0", "w1"} and rec[a] == max(rec.values())  # the same max-over-w rule for every model
        got = gens[(gens.model == m) & (gens.attack == a) & (gens.split == "forget")].sort_values("item")
        np.testing.assert_array_equal(items.forget_attacked[m], got.rougeL.to_numpy())
        assert items.forget_attacked[m].mean() == pytest.approx(
            res.to_frame().set_index(["model", "attack"]).loc[(m, a), "forget_rougeL"])


def test_calibrated_against_the_reference_only(lab):
    _, _, res = lab
    items = res.evidence_items()["extraction_recovery"]
    sup = calibrate(items, "suppressed_head", "original", "retain_only", "reference")
    assert sup.control == CONTROL_REFERENCE and sup.lo <= sup.excess <= sup.hi
    ref = calibrate(items, "retain_only", "original", None, "reference")
    from tests.fixtures.levels import expected_levels

    # the control is the reference's level under the same attack, in the original's-lead units
    assert (sup.raw, sup.control_value, sup.excess) == pytest.approx(
        expected_levels(items, "suppressed_head", "original", "retain_only"))
    assert sup.excess == pytest.approx(sup.raw - sup.control_value)
    # without the reference the attack reads the original: no control, the attacked level is shown
    assert ref.control == CONTROL_NONE and ref.raw == pytest.approx(items.forget_attacked["retain_only"].mean())
    alone = calibrate(items, "suppressed_head", "original", None, "reference")
    assert alone.control == CONTROL_NONE and not alone.calibrated


def test_spec_registered_with_reference_control(lab):
    _, _, res = lab
    spec = registry.get_spec("extraction")
    assert spec is SPEC and [(e.key, e.control) for e in spec.evidence] == [("extraction_recovery", "reference")]
    (key,) = registry.collect_evidence_items([("extraction", res)])
    assert key == "extraction_recovery"
