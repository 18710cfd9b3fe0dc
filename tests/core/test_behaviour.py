"""Behavioural scorecard against hand-computed values on toy GPT-2 models with a word-level tokenizer.

Three toy checkpoints share one tokenizer: `uniform` (all weights zero: every next-token distribution is
uniform, so p~ = 1/V exactly), `memorised` (trained on forget + retain texts until every answer is exact) and
`retain_only` (trained on the retain texts only). Holdout items reuse the vocabulary but were never trained on.
"""

from __future__ import annotations

import copy
import math
import zlib

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from unlearn_core.analyses.common import text_scores
from unlearn_core.analyses.scorecard import (
    ITEM_COLUMNS,
    SUMMARY_COLUMNS,
    ScorecardConfig,
    ScorecardResult,
    aggregate_truth_ratio,
    answer_in,
    compute_scorecard,
    extraction_strength,
    extraction_strength_ou,
    forget_quality,
    privleak,
    rouge_l_recall,
    truth_ratio,
    wilson_interval,
)
from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.model.scoring import Encoded, encode, score_encoded
from unlearn_core.types import AuditData, LoadedModel, ModelSet

FORGET = (
    QAItem("where was alice born", "in paris", "paris city", ("in rome", "in oslo", "in lima"), line=1),
    QAItem("what does bob play", "the red drum", "a drum", ("the blue flute", "a green harp"), line=2),
    QAItem("who employs carol", "the big bank", line=3),  # no paraphrase: truth ratio NaN
)
RETAIN = (
    QAItem("where was dave born", "in rome", "rome city", ("in paris", "in lima"), line=1),
    QAItem("what does erin play", "a green harp", "the harp", ("the red drum", "a blue flute"), line=2),
)
HOLDOUT = (
    QAItem("where was frank born", "in lima", line=1),
    QAItem("what does gina play", "the blue flute", line=2),
    QAItem("who employs hugo", "a small shop", line=3),
)
FMT = PromptFormat()


def _tokenizer() -> PreTrainedTokenizerFast:
    words = set()
    for it in FORGET + RETAIN + HOLDOUT:
        for s in (FMT.prompt(it), it.answer, it.paraphrased_answer or "", *it.perturbed_answers):
            words.update(s.replace(":", " : ").split())
    vocab = {"[PAD]": 0, "[EOS]": 1, "[UNK]": 2}
    for w in sorted(words):
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")


def _gpt2(vocab_size: int, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size, n_positions=32, n_embd=32, n_layer=1, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=1, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg)


def _train(tok, items, steps: int = 300, seed: int = 0) -> GPT2LMHeadModel:
    """Full-batch Adam on prompt + answer + EOS until the items are memorised (right-padded, pads ignored)."""
    model = _gpt2(len(tok), seed)
    seqs = []
    for it in items:
        prompt, answer = FMT.pair(it)
        p_ids = tok(prompt)["input_ids"]
        a_ids = tok(answer, add_special_tokens=False)["input_ids"]
        seqs.append(p_ids + a_ids + [tok.eos_token_id])
    width = max(map(len, seqs))
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        ids[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), 1
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def toy():
    tok = _tokenizer()
    uniform = _gpt2(len(tok))
    with torch.no_grad():
        for prm in uniform.parameters():
            prm.zero_()
    return {
        "tok": tok,
        "uniform": uniform.eval(),
        "memorised": _train(tok, FORGET + RETAIN),
        "retain_only": _train(tok, RETAIN, seed=1),
    }


def _lm(toy, key, name=None, role="unlearned") -> LoadedModel:
    return LoadedModel(name or key, role, toy[key], toy["tok"], path=f"/toy/{key}", hash=f"h-{key}")


def _data(holdout=HOLDOUT) -> AuditData:
    return AuditData(forget=FORGET, retain=RETAIN, holdout=holdout, prompt_format=FMT)


def result_models(toy) -> ModelSet:
    return ModelSet(
        original=_lm(toy, "memorised", "original", "original"),
        unlearned={"uniform": _lm(toy, "uniform")},
        retain_only=_lm(toy, "retain_only", role="retain_only"),
    )


@pytest.fixture(scope="module")
def result(toy) -> ScorecardResult:
    return compute_scorecard(result_models(toy), _data())


# ------------------------------------------------------------------------------------------ pure definitions


def test_extraction_strength_by_hand():
    t, f = True, False
    assert extraction_strength(torch.tensor([t, t, t, t])) == 1.0
    assert extraction_strength(torch.tensor([t, f, t, t])) == 0.5  # k* = 2 of 4
    assert extraction_strength(torch.tensor([f, t, t, t])) == 0.75
    assert extraction_strength(torch.tensor([t, t, t, f])) == 0.0
    assert math.isnan(extraction_strength(torch.zeros(0, dtype=torch.bool)))


def test_truth_ratio_definitions():
    assert truth_ratio(math.log(0.5), [math.log(0.1), math.log(0.4)]) == pytest.approx(math.sqrt(0.04) / 0.5)
    assert math.isnan(truth_ratio(-1.0, []))
    assert aggregate_truth_ratio([0.5, 2.0, math.nan], "forget") == pytest.approx(0.5)
    assert aggregate_truth_ratio([0.25, 2.0], "retain") == pytest.approx((0.75 + 0.0) / 2)
    assert math.isnan(aggregate_truth_ratio([math.nan], "forget"))
    assert forget_quality([0.1, 0.5, 0.9], [0.1, 0.5, 0.9]) == pytest.approx(1.0)
    assert math.isnan(forget_quality([math.nan], [0.3]))


def test_rouge_l_recall_of_known_string():
    stemmed = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    # gold tokens (the, cat, sat) vs generated (a, cat, sat, down): LCS = 2 only once "cats" is stemmed
    assert rouge_l_recall(stemmed, "the cats sat", "a cat sat down") == pytest.approx(2 / 3)
    assert rouge_l_recall(plain, "the cats sat", "a cat sat down") == pytest.approx(1 / 3)
    assert rouge_l_recall(stemmed, "in paris", "") == 0.0


def test_mia_score_definitions():
    lp = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0])
    assert text_scores.loss_score(lp) == pytest.approx(3.0)
    assert text_scores.min_k(lp, 0.4) == pytest.approx(-4.5)  # lowest 2 of 5
    assert text_scores.min_k(lp, 0.1) == pytest.approx(-5.0)  # at least one token
    assert text_scores.zlib_score(lp, "abc abc") == pytest.approx(15.0 / len(zlib.compress(b"abc abc")))
    mu, sd = torch.full((5,), -2.0), torch.full((5,), 2.0)
    assert text_scores.min_k_plus_plus(lp, mu, sd, 0.4) == pytest.approx(-1.25)  # mean(-1.5, -1.0)
    auc, fpr, tpr = text_scores.auc_roc([1, 1, 0, 0], [0.9, 0.8, 0.1, float("nan")])
    assert auc == 1.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert math.isnan(text_scores.auc_roc([1, 1], [0.1, 0.2])[0])


def test_config_validation():
    ScorecardConfig(batch_size=1, min_k=1.0, generate=False)
    for bad in (
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"max_new_tokens": 0},
        {"min_k": 0.0},
        {"min_k": 1.5},
        {"mia_text": "raw"},
        {"definition": "tofu"},
    ):
        with pytest.raises(ValueError):
            ScorecardConfig(**bad)
    with pytest.raises(TypeError):
        ScorecardConfig(generate=1)


# --------------------------------------------------------------------------------------------- on toy models


def test_uniform_model_hand_values(toy, result):
    v = len(toy["tok"])
    items = result.items_frame()
    uni = items[items.model == "uniform"]
    np.testing.assert_allclose(uni.p, 1.0 / v, rtol=1e-5)
    # argmax of all-zero logits is token 0 ([PAD]) which never occurs in an answer
    assert (uni.acc == 0).all() and (uni.token_acc == 0).all()
    # OU's extraction-strength loop stops at k = |y| - 1 when even the last token is wrong: 1/|y|, never 0
    n_tokens = [len(toy["tok"](" " + a, add_special_tokens=False)["input_ids"]) for a in uni.gold_answer]
    np.testing.assert_allclose(uni.es, [1.0 / n for n in n_tokens])
    assert (uni.definition == "open-unlearning").all()
    assert (uni.generated_answer == "").all() and (uni.rougeL_recall == 0).all()
    tr = uni.truth_ratio.dropna()
    assert len(tr) == 4
    np.testing.assert_allclose(tr, 1.0, rtol=1e-5)
    s = result.scores("uniform")
    assert s["forget_truth_ratio"] == pytest.approx(1.0) and s["retain_truth_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert s["retain_ppl"] == pytest.approx(v, rel=1e-5)
    # every text has the same per-token log-prob: LOSS ties give chance AUC, Min-K%++ is 0 everywhere
    assert s["mia_auc_loss"] == pytest.approx(0.5) and s["mia_auc_minkpp"] == pytest.approx(0.5)


def test_memorised_model_is_exact(result):
    items = result.items_frame()
    mem = items[items.model == "original"]
    assert (mem.acc == 1).all() and (mem.token_acc == 1).all() and (mem.es == 1).all()
    assert (mem.generated_answer == mem.gold_answer).all()
    assert (mem.rougeL_recall == 1).all()
    s = result.scores("original")
    assert s["forget_acc"] == 1.0 and s["retain_acc"] == 1.0 and s["forget_es"] == 1.0
    assert s["forget_p"] > 0.9 and s["retain_ppl"] < 1.2


def _mean_lps(toy, prompt: str, answers: list[str], eos: bool) -> list[float]:
    """Mean answer log-prob per answer, with the EOS appended to the answer span when `eos` (OU's span)."""
    tok = toy["tok"]
    enc = encode(tok, [prompt] * len(answers), answers)
    if eos:
        enc = [Encoded(e.prompt_ids, (*e.answer_ids, tok.eos_token_id)) for e in enc]
    return [float(lp.mean()) for lp in score_encoded(toy["memorised"], enc, 0).logprobs]


@pytest.mark.parametrize("definition", ["open-unlearning", "own"])
def test_truth_ratio_matches_score_answers(toy, result, definition):
    if definition == "own":
        result = compute_scorecard(result_models(toy), _data(), ScorecardConfig(generate=False, definition="own"))
    items = result.items_frame()
    for split, data in (("forget", FORGET), ("retain", RETAIN)):
        for i, it in enumerate(data):
            got = items[(items.model == "original") & (items.split == split) & (items.item == i)].truth_ratio.item()
            if it.paraphrased_answer is None:
                assert math.isnan(got)
                continue
            alts = [FMT.answer(a) for a in (it.paraphrased_answer, *it.perturbed_answers)]
            lps = _mean_lps(toy, FMT.prompt(it), alts, eos=definition == "open-unlearning")
            p_correct = math.exp(lps[0])
            p_wrong = math.exp(float(np.mean(lps[1:])))  # geometric mean of p~ = exp(mean log p~)
            assert got == pytest.approx(p_wrong / p_correct, rel=1e-4)


def test_membership_inference_separates_memorised_members(result):
    s = result.scores("original")
    for m in ("loss", "zlib", "mink", "minkpp"):
        assert s[f"mia_auc_{m}"] == 1.0, m
    roc = result.roc_frame()
    curve = roc[(roc.model == "original") & (roc.metric == "loss")]
    assert curve.fpr.iloc[0] == 0.0 and curve.tpr.iloc[-1] == 1.0 and (curve.auc == 1.0).all()
    mia = result.mia_frame()
    assert set(mia.split) == {"forget", "holdout"} and len(mia) == 3 * 4 * (len(FORGET) + len(HOLDOUT))
    # PrivLeak (MUSE/OU): (AUC_ref - AUC) / (1 - AUC_ref) x 100; zero for the reference itself by construction,
    # negative for a model whose forget set reads as training data (AUC 1 -> -100 whatever the reference)
    assert result.scores("retain_only")["privleak_loss"] == 0.0
    ref = result.scores("retain_only")["mia_auc_loss"]
    assert ref < 1.0
    assert s["privleak_loss"] == pytest.approx((ref - 1.0) / (1.0 - ref) * 100) == pytest.approx(-100.0)
    assert s["privleak_loss"] < 0


def test_privleak_definition():
    assert privleak(1.0, 0.5) == pytest.approx(-100.0)  # memorising model vs a chance-level reference
    assert privleak(0.5, 0.5) == 0.0
    assert privleak(0.25, 0.5) == pytest.approx(50.0)  # under-memorised: positive
    assert privleak(0.9, 0.6, ou=True) == pytest.approx((0.6 - 0.9) / (1 - 0.6) * 100)
    assert math.isnan(privleak(0.7, 1.0)) and math.isnan(privleak(math.nan, 0.5))


def test_result_tables_and_metadata(result):
    summary = result.to_frame()
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert list(summary.model) == ["original", "uniform", "retain_only"]
    assert list(summary.role) == ["original", "unlearned", "retain_only"]
    assert list(result.items_frame().columns) == [*ITEM_COLUMNS, "definition"]
    assert set(summary.definition) == {"open-unlearning"} and result.variants["definition"] == "open-unlearning"
    assert len(result.items) == 3 * (len(FORGET) + len(RETAIN))
    assert result.variants["rougeL_recall"].startswith("rougeL_recall_stemmed")
    assert "min_k_0.4" in result.variants["mia_mink"]
    assert result.model_hashes == {"original": "h-memorised", "uniform": "h-uniform", "retain_only": "h-retain_only"}
    assert result.data_hash == _data().hash
    assert 0.0 <= result.scores("uniform")["forget_quality"] <= 1.0
    assert result.scores("retain_only")["forget_quality"] == pytest.approx(1.0)
    with pytest.raises(KeyError):
        result.scores("nope")


def test_identical_models_give_forget_quality_one_and_no_privleak(toy):
    ms = ModelSet(
        original=_lm(toy, "memorised", "original", "original"),
        unlearned={"copy": _lm(toy, "memorised", "copy")},
        retain_only=_lm(toy, "memorised", "ref", "retain_only"),
    )
    res = compute_scorecard(ms, _data(), ScorecardConfig(generate=False))
    for name in ("original", "copy"):
        s = res.scores(name)
        assert s["forget_quality"] == pytest.approx(1.0)
        assert all(s[f"privleak_{m}"] == 0.0 for m in ("loss", "zlib", "mink", "minkpp"))
    assert res.items_frame().rougeL_recall.isna().all() and res.items_frame().generated_answer.isna().all()


def test_batch_size_invariance(toy, result):
    ms = ModelSet(
        original=_lm(toy, "memorised", "original", "original"),
        unlearned={"uniform": _lm(toy, "uniform")},
        retain_only=_lm(toy, "retain_only", role="retain_only"),
    )
    one = compute_scorecard(ms, _data(), ScorecardConfig(batch_size=1))
    for a, b in ((one.to_frame(), result.to_frame()), (one.items_frame(), result.items_frame())):
        num = a.select_dtypes("number").columns
        np.testing.assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), rtol=1e-5, atol=1e-5, equal_nan=True)
        other = [c for c in a.columns if c not in num]
        assert a[other].equals(b[other])
    np.testing.assert_allclose(one.mia_frame().score, result.mia_frame().score, rtol=1e-5, atol=1e-5)


def test_without_holdout_or_reference(toy):
    ms = ModelSet(original=_lm(toy, "memorised", "original", "original"), unlearned={"uniform": _lm(toy, "uniform")})
    res = compute_scorecard(ms, _data(holdout=()), ScorecardConfig(generate=False))
    summary = res.to_frame()
    mia_cols = [c for c in SUMMARY_COLUMNS if c.startswith(("mia_", "privleak_"))]
    assert summary[mia_cols + ["forget_quality"]].isna().all().all()
    assert res.roc_frame().empty and res.mia_frame().empty


def test_progress_is_reported_and_can_abort(toy):
    ms = ModelSet(original=_lm(toy, "uniform", "original", "original"), unlearned={})
    seen = []
    compute_scorecard(ms, _data(), ScorecardConfig(generate=False), progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0 and len(seen) == 4

    class Stop(Exception):
        pass

    def abort(fraction, message):
        if fraction > 0:
            raise Stop(message)

    with pytest.raises(Stop):
        compute_scorecard(ms, _data(), ScorecardConfig(generate=False), progress=abort)


def test_duplicate_model_names_rejected(toy):
    ms = ModelSet(original=_lm(toy, "uniform", "x", "original"), unlearned={"x": _lm(toy, "memorised", "x")})
    with pytest.raises(ValueError, match="unique"):
        compute_scorecard(ms, _data())


def test_bfloat16_model_runs_and_agrees(toy, result):
    bf = copy.deepcopy(toy["memorised"]).to(torch.bfloat16)
    ms = ModelSet(
        original=LoadedModel("original", "original", bf, toy["tok"], "/toy/bf16", "h-bf16"),
        unlearned={},
    )
    res = compute_scorecard(ms, _data())
    s, ref = res.scores("original"), result.scores("original")
    assert s["forget_acc"] == ref["forget_acc"] == 1.0
    assert s["forget_p"] == pytest.approx(ref["forget_p"], abs=0.05)
    assert all(isinstance(v, float) for v in s.values())


def test_scorecard_spec_is_declared_in_its_module(result):
    from unlearn_core.analyses import registry
    from unlearn_core.analyses import scorecard as behaviour

    spec = registry.get_spec("scorecard")
    assert spec is behaviour.SPEC and spec.title == "Behavioural scorecard" and spec.evidence == ()
    assert isinstance(spec.default_config(), ScorecardConfig)
    tables = spec.tables(result)
    assert set(tables) == {"scorecard_summary", "scorecard_items", "scorecard_roc"}
    assert tables["scorecard_summary"].equals(result.to_frame())
    assert spec.scores(result, "uniform") == result.scores("uniform")


def test_own_definition_pins_its_deliberate_differences(toy, result):
    """The "own" variant differs from OU on purpose in two places: extraction strength by the paper (a wrong last
    token gives 0, OU's loop 1/|y|) and the membership-inference text (prompt + answer, no EOS, zlib over the summed
    loss, vs OU's answer + EOS with the mean loss); it also scores p~ without the EOS OU appends."""
    t, f = True, False
    assert extraction_strength(torch.tensor([t, t, t, f])) == 0.0
    assert extraction_strength_ou(torch.tensor([t, t, t, f])) == pytest.approx(0.25)
    assert extraction_strength(torch.tensor([t, f, t, t])) == extraction_strength_ou(torch.tensor([t, f, t, t])) == 0.5
    own = compute_scorecard(result_models(toy), _data(), ScorecardConfig(definition="own"))
    assert own.config.new_tokens == 24 and result.config.new_tokens == 200
    assert own.config.mia_mode == "prompt_answer" and result.config.mia_mode == "answer"
    items_own, items_ou = own.items_frame(), result.items_frame()
    assert set(items_own.definition) == {"own"} and set(own.to_frame().definition) == {"own"}
    uni = items_own[items_own.model == "uniform"]
    assert (uni.es == 0).all()  # the paper's ES: nothing extractable
    assert (items_ou[items_ou.model == "uniform"].es > 0).all()
    # p~ over the answer only (own) vs answer + EOS (OU), checked against an independent scoring call
    tok, it = toy["tok"], FORGET[0]
    prompt, answer = FMT.pair(it)
    no_eos = math.exp(_mean_lps(toy, prompt, [answer], eos=False)[0])
    with_eos = math.exp(_mean_lps(toy, prompt, [answer], eos=True)[0])
    got = {d: df[(df.model == "original") & (df.split == "forget") & (df.item == 0)].p.item()
           for d, df in (("own", items_own), ("ou", items_ou))}
    assert got["own"] == pytest.approx(no_eos, rel=1e-5) and got["ou"] == pytest.approx(with_eos, rel=1e-5)
    # zlib: own = -(summed NLL of the prompt + answer text after its first token) / zlib bytes of that text
    text = prompt + answer
    ids = tok(text)["input_ids"]
    enc = [Encoded(tuple(ids[:1]), tuple(ids[1:]))]
    nll_sum = -float(score_encoded(toy["memorised"], enc, 0).logprobs[0].sum())
    mia = own.mia_frame()
    z = mia[(mia.model == "original") & (mia.metric == "zlib") & (mia.split == "forget") & (mia.item == 0)].score
    assert z.item() == pytest.approx(-nll_sum / len(zlib.compress(text.encode())), rel=1e-5)
    mia_ou = result.mia_frame()
    z_ou = mia_ou[(mia_ou.model == "original") & (mia_ou.metric == "zlib") & (mia_ou.split == "forget")
                  & (mia_ou.item == 0)].score
    answer_text = tok.decode(tok(answer, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
    assert z_ou.item() == pytest.approx(math.log(with_eos) / len(zlib.compress(answer_text.encode())), rel=1e-5)


def test_wilson_interval_and_answer_match():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)  # the textbook value for 0 of 10
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert answer_in("in Paris", "she was born  IN paris, they say") and not answer_in("in paris", "in rome")
    assert not answer_in("  ", "anything")


def test_leak_at_k_samples_find_what_greedy_finds_and_are_seeded(toy):
    cfg = ScorecardConfig(generate=False, leak_k=6, leak_temperature=1.0, leak_seed=3)
    res = compute_scorecard(result_models(toy), _data(), cfg)
    s_mem, s_uni = res.scores("original"), res.scores("uniform")
    # the memorised model samples its answers: every forget item leaks, and the interval says how sure that is
    assert s_mem["forget_leak_at_k"] == 1.0
    assert s_mem["forget_leak_lo"] == pytest.approx(wilson_interval(3, 3)[0]) and s_mem["forget_leak_hi"] == 1.0
    assert s_uni["forget_leak_at_k"] < s_mem["forget_leak_at_k"]
    items = res.items_frame()
    forget = items[items.split == "forget"]
    assert forget.leak.between(0, 1).all() and items[items.split == "retain"].leak.isna().all()
    again = compute_scorecard(result_models(toy), _data(), cfg)
    np.testing.assert_array_equal(again.items_frame().leak.to_numpy(), items.leak.to_numpy())
    assert "6 samples at temperature 1" in res.variants["leak_at_k"]
    off = compute_scorecard(result_models(toy), _data(), ScorecardConfig(generate=False))
    assert math.isnan(off.scores("original")["forget_leak_at_k"])
    with pytest.raises(ValueError):
        ScorecardConfig(leak_k=-1)
    with pytest.raises(ValueError):
        ScorecardConfig(leak_temperature=0)


def test_open_unlearning_definition_with_a_tokenizer_without_eos(toy):
    """No EOS to append: OU's spans are the answer tokens alone, so p~ equals the own variant's, and Min-K scores
    every answer token (nothing is dropped as if it were the EOS)."""
    tok = copy.deepcopy(toy["tok"])
    tok.eos_token = None
    assert tok.eos_token_id is None
    lm = LoadedModel("original", "original", toy["memorised"], tok, "/toy/noeos", "h-noeos")
    ms = ModelSet(original=lm, unlearned={})
    ou = compute_scorecard(ms, _data(), ScorecardConfig(generate=False))
    own = compute_scorecard(ms, _data(), ScorecardConfig(generate=False, definition="own", mia_text="answer"))
    np.testing.assert_allclose(ou.items_frame().p, own.items_frame().p, rtol=1e-6)
    mink = {r.item: r.score for r in ou.mia if r.metric == "mink" and r.split == "forget"}
    mink_own = {r.item: r.score for r in own.mia if r.metric == "mink" and r.split == "forget"}
    assert mink.keys() == mink_own.keys() and all(mink[i] == pytest.approx(mink_own[i], abs=1e-6) for i in mink)
