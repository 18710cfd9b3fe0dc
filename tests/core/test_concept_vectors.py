"""Concept-vector audit against planted ground truth.

Planted: a random tiny GPT-2 / Llama whose MLP column (layer l, neuron j) is set to a scaled unembedding row of
token t must be located first for a concept whose token is t; editing columns through hooks must equal editing a
deepcopy; identical checkpoints must give exactly cosine 1 and zero change. On the demo lab: zeroing the located
columns of a forget concept in the original must hurt that concept far more than the retain set, and
suppressed_head (only the last block changed) must leave every earlier column exactly unchanged.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from unlearn_core.analyses import registry
from unlearn_core.analyses.concept_vectors import ConceptVectorsConfig, ConceptVectorsResult, compute_concept_vectors
from unlearn_core.analyses.concept_vectors.ablation import score_under_edits, zero_ablation_attribution, zero_edit
from unlearn_core.analyses.concept_vectors.change import column_change, per_layer_change, weight_change
from unlearn_core.analyses.concept_vectors.locate import concept_items, locate_scores, top_candidates, word_token_ids
from unlearn_core.model import arch
from unlearn_core.model.scoring import encode, pad_id_of, score_encoded
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.codec import decode_result, encode_result

VOCAB, TOKEN, LAYER, NEURON = 97, 41, 1, 13


def _gpt2(seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=3, n_head=2, n_inner=64,
                                      tie_word_embeddings=False)).eval()


def _llama(seed=0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                        num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=32)).eval()


def _plant(model):
    with torch.no_grad():
        w = arch.mlp_out_matrix(model, LAYER)  # a view: writes reach the weight (Conv1D transposed or Linear)
        w[:, NEURON] = 5.0 * arch.unembedding(model)[TOKEN] / arch.unembedding(model)[TOKEN].norm()
    return model


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_planted_column_is_located_first(make):
    model = _plant(make())
    scores = locate_scores(model, [torch.tensor([TOKEN]), torch.tensor([TOKEN + 1])], k=5, apply_norm=True)
    assert scores.shape == (2, 3, arch.mlp_out_matrix(model, 0).shape[1])
    (layer, neuron, score), *_ = top_candidates(scores[0], 3)
    assert (layer, neuron) == (LAYER, NEURON) and score == pytest.approx(1.0)  # token t at rank 0
    assert scores[1, LAYER, NEURON] < 1.0  # an unrelated concept does not claim the planted column first


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_identical_models_give_exactly_no_change(make):
    m0 = _plant(make())
    m1 = copy.deepcopy(m0)
    cols = [(LAYER, NEURON), (0, 0), (2, 5)]
    ids = [torch.tensor([TOKEN]), None, None]
    rows = column_change(m0, m1, cols, 5, True, ids)
    assert [r["cosine"] for r in rows] == [1.0, 1.0, 1.0]
    assert [r["l2"] for r in rows] == [0.0, 0.0, 0.0] and [r["jaccard"] for r in rows] == [1.0, 1.0, 1.0]
    assert rows[0]["survival"] == 1.0 and math.isnan(rows[1]["survival"])
    wc = weight_change(m0, m1, "copy")
    assert len(wc) == len(list(m0.named_parameters())) and all(r["dnorm"] == 0.0 for r in wc)
    # now overwrite the planted column with another token's direction: the concept token must not survive
    with torch.no_grad():
        arch.mlp_out_matrix(m1, LAYER)[:, NEURON] = 5.0 * arch.unembedding(m1)[TOKEN + 7]
    changed = column_change(m0, m1, cols, 5, True, ids)
    assert changed[0]["cosine"] < 0.9 and changed[0]["survival"] == 0.0 and changed[1]["cosine"] == 1.0
    layer_df = per_layer_change(__import__("pandas").DataFrame(weight_change(m0, m1, "edit")))
    assert layer_df.loc[layer_df["rel_change"] > 0, "layer"].tolist() == [LAYER]


# ------------------------------------------------------------------------------------------------ demo lab


@pytest.fixture(scope="module")
def gpt2_lab(tiny_lab):
    ws = lab_workspace(tiny_lab, unlearned=["ga", "suppressed_head"])
    return ws.load_models(), ws.load_data()


CFG = ConceptVectorsConfig(n_candidates=8, max_unrelated=24, n_random=8, n_fallback=64, batch_size=256)


@pytest.fixture(scope="module")
def gpt2_result(gpt2_lab):
    models, data = gpt2_lab
    return compute_concept_vectors(models, data, CFG)


def test_hooks_equal_a_deepcopy_edit_and_leave_the_model_untouched(gpt2_lab):
    models, data = gpt2_lab
    lm = models.original
    before = {n: p.clone() for n, p in lm.model.named_parameters()}
    pairs = [data.prompt_format.pair(it) for it in data.forget[:6]]
    enc = encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    edits = [(zero_edit(lm.model, 0, j),) for j in range(0, 200, 40)]
    p, acc = score_under_edits(lm.model, enc, pad_id_of(lm.tokenizer), edits, batch_size=7)
    for v, (e,) in enumerate(edits):
        twin = copy.deepcopy(lm.model)
        with torch.no_grad():
            arch.mlp_out_matrix(twin, 0)[:, e.neuron] = 0
        ref = score_encoded(twin, enc, pad_id_of(lm.tokenizer))
        np.testing.assert_allclose(p[v], ref.prob().numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(acc[v], ref.accuracy().numpy())
    base = score_encoded(lm.model, enc, pad_id_of(lm.tokenizer))
    np.testing.assert_allclose(p[-1], base.prob().numpy(), rtol=1e-4, atol=1e-6)
    assert all(torch.equal(before[n], q) for n, q in lm.model.named_parameters())
    attr = zero_ablation_attribution(lm.model, enc, pad_id_of(lm.tokenizer))
    assert attr.shape == (arch.n_layers(lm.model), arch.mlp_out_matrix(lm.model, 0).shape[1])
    assert not attr.requires_grad and all(torch.equal(before[n], q) for n, q in lm.model.named_parameters())


def test_concept_tokens_and_items(gpt2_lab):
    models, data = gpt2_lab
    concept = data.forget[0].concept
    surname = concept.split()[-1]
    assert concept_items(data.forget, concept) == concept_items(data.forget, surname.lower())
    assert len(concept_items(data.forget, concept)) >= 2
    ids = word_token_ids(models.original.tokenizer, [surname])
    assert models.original.tokenizer(" " + surname, add_special_tokens=False)["input_ids"][0] in ids


def test_ablating_located_vectors_hurts_the_concept_not_retain(gpt2_result):
    ca = gpt2_result.concept_ablation
    concept_drop = (ca["concept_acc_before"] - ca["concept_acc_after"]).mean()
    retain_drop = (ca["retain_acc_before"] - ca["retain_acc_after"]).mean()
    p_drop = (ca["concept_p_before"] - ca["concept_p_after"]).mean()
    assert concept_drop >= 0.25 and retain_drop <= 0.1 and concept_drop > retain_drop + 0.2
    assert p_drop > 0.2
    s = gpt2_result.scores("ga")
    assert s["cv_oracle_forget_acc_drop"] > s["cv_oracle_retain_acc_drop"] + 0.2
    assert set(gpt2_result.located()["selected_by"]) <= {"filter", "attribution"}


def test_suppressed_head_leaves_earlier_columns_exactly_unchanged(gpt2_result, gpt2_lab):
    models, _ = gpt2_lab
    last = arch.n_layers(models.original.model) - 1
    ch = gpt2_result.change
    sh = ch[(ch["checkpoint"] == "suppressed_head") & (ch["layer"] < last)]
    assert len(sh) and (sh["cosine"] == 1.0).all() and (sh["l2"] == 0.0).all()
    ga = ch[ch["checkpoint"] == "ga"]
    assert ga["cosine"].median() > 0.9  # GA leaves concept vectors nearly unchanged (the paper's finding)
    wc = gpt2_result.weight_change
    moved = wc[(wc["checkpoint"] == "suppressed_head") & (wc["dnorm"] > 0)]
    assert moved["layer"].min() == last  # only the last block and the head moved
    frame = gpt2_result.to_frame()
    assert frame.loc[frame["checkpoint"] == "original", "median_cos_concept"].item() == 1.0


def test_result_is_storable_and_registered_for_the_cli(gpt2_result):
    back = decode_result(encode_result(gpt2_result))
    assert isinstance(back, ConceptVectorsResult) and back.config == CFG
    assert back.to_frame().equals(gpt2_result.to_frame())
    spec = registry.get_spec("concept_vectors")
    assert spec.name == "concept_vectors" and isinstance(spec.default_config(), ConceptVectorsConfig)
    tables = spec.tables(gpt2_result)
    assert {"concept_vectors_summary", "concept_vectors_layer_change"} <= set(tables)
    scores = spec.scores(gpt2_result, "suppressed_head")
    assert all(isinstance(v, float) for v in scores.values()) and scores["cv_median_cos_concept"] == 1.0


def test_config_is_validated():
    for bad in ({"top_k": 0}, {"effect_metric": "rouge"}, {"perturbation": "shuffle"}, {"fallback": "magic"},
                {"min_vectors": 99}, {"concepts": ("",)}, {"token_sources": ("names",)}):
        with pytest.raises((ValueError, TypeError)):
            ConceptVectorsConfig(**bad)


def test_runs_unchanged_on_the_llama_lab(tiny_llama_lab):
    ws = lab_workspace(tiny_llama_lab, unlearned=["ga"])
    models, data = ws.load_models(), ws.load_data()
    assert type(models.original.model).__name__ == "LlamaForCausalLM"
    res = compute_concept_vectors(models, data, CFG)
    ca = res.concept_ablation
    assert len(ca) == len({it.concept for it in data.forget})
    assert (ca["concept_p_before"] - ca["concept_p_after"]).mean() > (ca["retain_acc_before"]
                                                                        - ca["retain_acc_after"]).mean()
    assert res.to_frame()["median_cos_concept"].notna().all()
