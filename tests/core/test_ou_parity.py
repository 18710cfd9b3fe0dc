"""Parity with open-unlearning (OU) on the tiny demo lab, item by item.

The reference below is written from OU's published metric definitions (src/evals/metrics: memorization.py,
privacy.py, mia/*.py, utils.py), NOT by importing OU and not through the project's scoring code: each text is
tokenised the way OU's `preprocess_chat_instance` does it (prompt + answer in one call, EOS appended, labels = the
tokens after the prompt), scored one sequence at a time with an unbatched forward pass, and generated one prompt at
a time. The scorecard in its default "open-unlearning" definition must agree within 1e-4 per item.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from unlearn_core.analyses.scorecard import ScorecardConfig, compute_scorecard
from unlearn_core.run.workspace import lab_workspace

IGNORE = -100
CHECKPOINTS = ["ga", "npo", "suppressed_head"]
N_RETAIN = 12  # a slice of the retain split keeps the unbatched reference quick
K = 0.4


@pytest.fixture(scope="module")
def lab(tiny_lab):
    spec = lab_workspace(tiny_lab, unlearned=CHECKPOINTS, device="cpu")
    models = spec.load_models()
    data = spec.load_data()
    data = replace(data, retain=data.retain[:N_RETAIN])
    result = compute_scorecard(models, data, ScorecardConfig())
    return models, data, result


# ------------------------------------------------------------------------- OU's definitions, re-implemented


def ou_instance(tok, prompt: str, answer: str):
    """OU preprocess_chat_instance without a chat template: ids of prompt + answer (+ EOS), labels after prompt."""
    chat = tok(prompt + answer, add_special_tokens=True)["input_ids"]
    p = tok(prompt, add_special_tokens=True)["input_ids"]
    if chat[-1] != tok.eos_token_id:
        chat = chat + [tok.eos_token_id]
    labels = [IGNORE] * len(p) + chat[len(p):]
    return torch.tensor([chat]), torch.tensor([labels])


@torch.no_grad()
def ou_eval(model, tok, prompt: str, answer: str):
    """evaluate_probability (avg_loss over every label incl. EOS) and tokenwise_vocab_logprobs (labels but the last)."""
    ids, labels = ou_instance(tok, prompt, answer)
    logits = model(input_ids=ids).logits.float()
    losses = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=IGNORE, reduction="none")
    avg_loss = float(losses.sum() / (labels != IGNORE).sum())
    logp = torch.log_softmax(logits, -1)[0, :-1]
    idx = (labels[0] != IGNORE).nonzero()[:, 0][:-1]  # OU: "-1 to ignore eos prediction"
    vocab = logp[idx[0] - 1: idx[-1]]
    target = vocab.gather(1, ids[0, idx][:, None])[:, 0]
    return {"avg_loss": avg_loss, "prob": math.exp(-avg_loss), "vocab": vocab, "target": target}


def ou_min_k(target) -> float:
    lp = target.numpy()
    n = max(1, int(len(lp) * K))
    return -float(np.mean(np.sort(lp)[:n]))


def ou_min_k_pp(vocab, target) -> float:
    mu = (vocab.exp() * vocab).sum(-1)
    var = (vocab.exp() * vocab.square()).sum(-1) - mu.square()
    z = (target - mu) / var.clamp(min=1e-6).sqrt()
    n = max(1, int(len(z) * K))
    return -float(np.mean(sorted(z.numpy())[:n]))


def ou_auc(forget_scores, holdout_scores) -> float:
    """mia_auc: forget labelled 0, holdout 1, scores higher = non-member."""
    return float(roc_auc_score([0] * len(forget_scores) + [1] * len(holdout_scores),
                               list(forget_scores) + list(holdout_scores)))


def ou_truth_ratio(model, tok, prompt, item, fmt) -> float:
    para = ou_eval(model, tok, prompt, fmt.answer(item.paraphrased_answer))["avg_loss"]
    pert = [ou_eval(model, tok, prompt, fmt.answer(a))["avg_loss"] for a in item.perturbed_answers]
    return math.exp(-float(np.mean(pert))) / (math.exp(-para) + 1e-10)


@torch.no_grad()
def ou_rouge_recall(model, tok, prompt: str, answer: str, max_new: int) -> float:
    p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
    chat, _ = ou_instance(tok, prompt, answer)
    out = model.generate(torch.tensor([p_ids]), attention_mask=torch.ones(1, len(p_ids), dtype=torch.long),
                         max_new_tokens=max_new, do_sample=False, pad_token_id=tok.eos_token_id)
    gen = tok.decode(out[0, len(p_ids):], skip_special_tokens=True)
    eos_text = tok.decode([tok.eos_token_id])
    if eos_text and eos_text in gen:
        gen = gen.split(eos_text)[0]
    full = tok.decode(chat[0, len(p_ids):], skip_special_tokens=True, clean_up_tokenization_spaces=True)
    truth = full.strip()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    return scorer.score(truth, gen.strip())["rougeL"].recall


# --------------------------------------------------------------------------------------------------- the test


def test_open_unlearning_definition_matches_ou_formulas_per_item(lab):
    models, data, result = lab
    fmt = data.prompt_format
    items = result.items_frame()
    mia = result.mia_frame()
    assert set(items.definition) == {"open-unlearning"}
    forget_trs, aucs = {}, {}
    for name, lm in models.all().items():
        model, tok = lm.model, lm.tokenizer
        ctx = model.config.n_positions
        for split in ("forget", "retain"):
            mine = items[(items.model == name) & (items.split == split)].set_index("item")
            trs = []
            for i, it in enumerate(getattr(data, split)):
                prompt, answer = fmt.pair(it)
                ref = ou_eval(model, tok, prompt, answer)
                assert mine.loc[i, "p"] == pytest.approx(ref["prob"], abs=1e-4), (name, split, i)
                tr = ou_truth_ratio(model, tok, prompt, it, fmt)
                trs.append(tr)
                assert mine.loc[i, "truth_ratio"] == pytest.approx(tr, rel=1e-4, abs=1e-4), (name, split, i)
                if split == "forget":
                    budget = min(200, ctx - len(tok(prompt)["input_ids"]))
                    rouge = ou_rouge_recall(model, tok, prompt, answer, budget)
                    assert mine.loc[i, "rougeL_recall"] == pytest.approx(rouge, abs=1e-4), (name, i)
            trs = np.array(trs)
            if split == "forget":
                forget_trs[name] = trs
                agg = np.mean(np.minimum(trs, 1 / (trs + 1e-10)))  # closer_to_1_better
            else:
                agg = np.mean(np.maximum(0, 1 - trs))  # true_better
            assert result.scores(name)[f"{split}_truth_ratio"] == pytest.approx(agg, abs=1e-4)
        # membership inference on the answers, forget vs holdout
        stats = {s: [ou_eval(model, tok, *fmt.pair(it)) for it in getattr(data, s)] for s in ("forget", "holdout")}
        for metric, fn in (("mink", lambda r: ou_min_k(r["target"])),
                           ("minkpp", lambda r: ou_min_k_pp(r["vocab"], r["target"]))):
            ou_scores = {s: [fn(r) for r in rs] for s, rs in stats.items()}
            mine = mia[(mia.model == name) & (mia.metric == metric)]
            for s in ("forget", "holdout"):
                np.testing.assert_allclose(-mine[mine.split == s].sort_values("item").score, ou_scores[s],
                                           rtol=1e-4, atol=1e-4)
            aucs[(name, metric)] = ou_auc(ou_scores["forget"], ou_scores["holdout"])
            assert result.scores(name)[f"mia_auc_{metric}"] == pytest.approx(aucs[(name, metric)], abs=1e-4)

    # comparisons against the retain-only model: forget quality (KS on raw ratios) and PrivLeak (privacy.py)
    for name in models.all():
        s = result.scores(name)
        fq = ks_2samp(forget_trs[name], forget_trs["retain_only"]).pvalue
        assert s["forget_quality"] == pytest.approx(fq, abs=1e-4)
        for metric in ("mink", "minkpp"):
            score, ref = 1 - aucs[(name, metric)], 1 - aucs[("retain_only", metric)]
            assert s[f"privleak_{metric}"] == pytest.approx((score - ref) / (ref + 1e-10) * 100, abs=1e-4)
    # the checks are not vacuous: the lab's checkpoints differ on every compared quantity
    summary = result.to_frame()
    assert summary.forget_p.nunique() == len(summary) and summary.mia_auc_mink.nunique() > 1
    assert summary.privleak_mink.abs().max() > 1
