"""compute_scorecard: one teacher-forced scoring call per model and split, one batched generation."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unlearn_core.analyses.common.text_scores import MIA_METRICS, auc_roc, encode_texts, membership_scores
from unlearn_core.analyses.scorecard.metrics import (
    aggregate_truth_ratio,
    answer_in,
    extraction_strength,
    extraction_strength_ou,
    forget_quality,
    has_truth_ratio,
    mean_lp,
    mean_of,
    model_utility,
    privleak,
    rouge_l_recall,
    truth_ratio,
    wilson_interval,
)
from unlearn_core.analyses.scorecard.result import (
    ITEM_FIELD,
    OU_PRIVLEAK_REF,
    SPLITS,
    SUMMARY_COLUMNS,
    ItemScore,
    MiaScore,
    RocCurve,
    ScorecardConfig,
    ScorecardResult,
)
from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.model.scoring import (
    Encoded,
    encode,
    greedy_generate,
    input_device,
    left_pad,
    pad_id_of,
    score_encoded,
)
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress


def _variants(cfg: ScorecardConfig) -> dict[str, str]:
    """metric -> the exact definition used (goes into every exported table set)."""
    k = f"{cfg.min_k:g}"
    ou = cfg.ou
    eos = " + EOS (OU's span)" if ou else ""
    gen = (f" (greedy, max_new_tokens={cfg.new_tokens} capped at the model's context, cut at EOS)"
           if cfg.generate else " (not computed)")
    return {
        "definition": cfg.definition,
        "p": f"exp(mean answer{eos} token log-prob), teacher forced",
        "token_acc": "share of answer tokens with argmax == label, teacher forced (EOS not counted)",
        "acc": "all answer tokens argmax-correct, teacher forced (EOS not counted)",
        "rougeL_recall": f"rougeL_recall_{'stemmed' if cfg.rouge_stemmer else 'unstemmed'}" + gen,
        "truth_ratio": f"tr = p_wrong / p_paraphrased{' (+1e-10)' if ou else ''}, p_wrong = geometric mean p~ "
        f"over perturbed answers, answers{eos}; forget: mean(min(tr, 1/tr)) (closer_to_1_better); "
        "retain: mean(max(0, 1 - tr)) (true_better)",
        "es": ("OU loop: 1 - k/|y|, k = first index with argmax[k:] == y[k:], |y| - 1 if none (last token "
               "wrong -> 1/|y|)") if ou else "1 - k*/|y|, k* = index after the last teacher-forced argmax error "
        "(the paper: last token wrong -> 0)",
        "forget_quality": "scipy ks_2samp p-value, raw forget truth ratios vs the retain-only model's",
        "model_utility": "harmonic mean of retain p, retain rougeL_recall, retain truth ratio (true_better); "
        "OU's real_authors and world_facts splits are not in the audit",
        "retain_ppl": "exp(token-weighted mean NLL of retain answers, EOS not counted)",
        "leak_at_k": (f"share of forget items whose gold answer appears (case-insensitive) in any of {cfg.leak_k} "
                      f"samples at temperature {cfg.leak_temperature:g} (seed {cfg.leak_seed}), 95% Wilson interval"
                      if cfg.leak_k else "not computed (leak_k = 0)"),
        "mia_text": cfg.mia_mode + (" (prompt is context only)" if cfg.mia_mode == "answer"
                                    else "; first token is context only") + (", + EOS" if ou else ""),
        "mia_loss": f"-mean token NLL{' incl. EOS' if ou else ''}",
        "mia_zlib": "-(mean token NLL incl. EOS / zlib bytes of the decoded scored text) (OU)" if ou
        else "-(sum token NLL / zlib-compressed bytes)",
        "mia_mink": f"min_k_{k}: mean of lowest {k} share of token log-probs" + (" (EOS left out)" if ou else ""),
        "mia_minkpp": f"min_k++_{k}: lowest {k} share of (log p - mu) / sigma under the next-token distribution"
        + (" (EOS left out, variance clamped at 1e-6)" if ou else ""),
        "mia_auc": "sklearn roc_auc_score, forget = members = positive, holdout = negative (1 = forget looks "
        "like training data; OU's orientation)",
        "privleak": "(AUC_ref - AUC) / (1 - AUC_ref) * 100 (MUSE/OU), AUC_ref = retain-only model's"
        + (f"; {OU_PRIVLEAK_REF} without one (OU's ref_value)" if ou else "; NaN without one"),
    }


# ------------------------------------------------------------------------------------------------- scoring


@dataclass
class _SplitScores:
    rows: list[ItemScore]
    truth_ratios: list[float]  # per item, NaN where the item has no paraphrase/perturbations
    nll_sum: float  # summed gold-answer NLL (perplexity is token-weighted)
    n_tokens: int


def _with_eos(enc: list[Encoded], tokenizer, on: bool) -> list[Encoded]:
    """OU appends EOS to every answer (its chat preprocessing) and scores it; a tokenizer without one is left as is."""
    eos = tokenizer.eos_token_id
    if not on or eos is None:
        return enc
    return [Encoded(e.prompt_ids, (*e.answer_ids, int(eos))) for e in enc]


def _eos_used(lm: LoadedModel, cfg: ScorecardConfig) -> bool:
    return cfg.ou and lm.tokenizer.eos_token_id is not None



@torch.no_grad()
def sample_generate(lm: LoadedModel, prompts: list[str], k: int, temperature: float, max_new_tokens: int,
                    batch_size: int, seed: int) -> list[list[str]]:
    """k sampled continuations per prompt (cut at EOS), seeded; the global RNG is left as it was.

    Greedy decoding shows the single most likely answer; sampling at temperature T shows whether the answer still
    has real probability mass, which is what leaks when a deployed model samples."""
    tok, model = lm.tokenizer, lm.model
    device = input_device(model)
    pad = pad_id_of(tok)
    enc = tok(list(prompts), add_special_tokens=True)["input_ids"]
    out: list[list[str]] = [[] for _ in prompts]
    rows = max(1, batch_size // k)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), rows):
            batch = list(range(start, min(len(prompts), start + rows)))
            ids, mask = left_pad([enc[i] for i in batch], pad)
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                 temperature=float(temperature), top_k=0, top_p=1.0, num_return_sequences=k,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tok.eos_token_id)
            for j in range(gen.shape[0]):
                new = gen[j, ids.shape[1]:].tolist()
                if tok.eos_token_id is not None and tok.eos_token_id in new:
                    new = new[: new.index(tok.eos_token_id)]
                out[batch[j // k]].append(tok.decode(new, skip_special_tokens=True))
    return out


def _budget(lm: LoadedModel, prompts: list[str], wanted: int) -> int:
    """The greedy budget, capped so prompt + generation fit the model's context (OU's 200 tokens would overrun a
    small model's absolute position table and crash)."""
    cfg = getattr(lm.model, "config", None)
    ctx = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if not isinstance(ctx, int):
        return wanted
    longest = max(len(ids) for ids in lm.tokenizer(list(prompts), add_special_tokens=True)["input_ids"])
    return max(1, min(wanted, ctx - longest))


def _score_split(
    lm: LoadedModel, split: str, items: tuple[QAItem, ...], fmt: PromptFormat, cfg: ScorecardConfig, scorer
) -> _SplitScores:
    n = len(items)
    if n == 0:
        return _SplitScores([], [], 0.0, 0)
    pairs = [fmt.pair(it) for it in items]
    prompts, answers = [p for p, _ in pairs], [a for _, a in pairs]
    # paraphrased + perturbed answers go after the gold answers so ONE length-batched scoring call covers all
    owners: list[int] = []
    for i, it in enumerate(items):
        if has_truth_ratio(it):
            for alt in (it.paraphrased_answer, *it.perturbed_answers):
                prompts.append(prompts[i])
                answers.append(fmt.pair(it, alt)[1])
                owners.append(i)
    eos = _eos_used(lm, cfg)
    enc = _with_eos(encode(lm.tokenizer, prompts, answers), lm.tokenizer, eos)
    sc = score_encoded(lm.model, enc, pad_id_of(lm.tokenizer), cfg.batch_size, share_prompts=True)
    lps = [mean_lp(lp) for lp in sc.logprobs]  # p~ and truth ratio: over the EOS too when the definition adds it
    alt_lps: dict[int, list[float]] = {}
    for j, owner in enumerate(owners):
        alt_lps.setdefault(owner, []).append(lps[n + j])  # [paraphrased, *perturbed] in order
    trs = [truth_ratio(alt_lps[i][0], alt_lps[i][1:], ou=cfg.ou) if i in alt_lps else math.nan for i in range(n)]

    generated: list[str | None] = [None] * n
    if cfg.generate:
        generated = greedy_generate(lm.model, lm.tokenizer, prompts[:n], _budget(lm, prompts[:n], cfg.new_tokens),
                                    cfg.batch_size)

    leaks = [math.nan] * n
    if cfg.leak_k and split == "forget":
        samples = sample_generate(lm, prompts[:n], cfg.leak_k, cfg.leak_temperature,
                                  _budget(lm, prompts[:n], cfg.new_tokens), cfg.batch_size, cfg.leak_seed)
        leaks = [float(np.mean([answer_in(answers[i], x) for x in samples[i]])) for i in range(n)]

    es_fn = extraction_strength_ou if cfg.ou else extraction_strength
    rows, nll, n_tok = [], 0.0, 0
    for i, it in enumerate(items):
        # token accuracy, accuracy, ES and perplexity read the answer tokens only (OU's EM and ES drop the EOS too)
        correct = sc.correct[i][:-1] if eos else sc.correct[i]
        answer_lp = sc.logprobs[i][:-1] if eos else sc.logprobs[i]
        nll += float(-answer_lp.sum())
        n_tok += answer_lp.numel()
        gold = answers[i].strip()
        gen = generated[i].strip() if generated[i] is not None else None
        rows.append(
            ItemScore(
                model=lm.name,
                split=split,
                item=i,
                line=it.line,
                question=it.question,
                gold_answer=gold,
                generated_answer=gen,
                p=math.exp(lps[i]) if not math.isnan(lps[i]) else math.nan,
                token_acc=float(correct.float().mean()) if correct.numel() else math.nan,
                acc=float(bool(correct.all())) if correct.numel() else math.nan,
                rougeL_recall=rouge_l_recall(scorer, gold, gen) if gen is not None else math.nan,
                truth_ratio=trs[i],
                es=es_fn(correct),
                leak=leaks[i],
            )
        )
    return _SplitScores(rows, trs, nll, n_tok)


def _mia_encoded(item: QAItem, fmt: PromptFormat, mode: str, tokenizer) -> Encoded:
    """The scored span of one MIA text: the answer after its prompt (OU), or a whole text after its first token."""
    if mode == "answer":
        prompt, answer = fmt.pair(item)
        return encode(tokenizer, [prompt], [answer])[0]
    text = item.as_text() if mode == "as_text" else "".join(fmt.pair(item))
    return encode_texts(tokenizer, [text])[0]


def _mia_text(item: QAItem, fmt: PromptFormat, mode: str) -> str:
    if mode == "as_text":
        return item.as_text()
    prompt, answer = fmt.pair(item)
    return answer if mode == "answer" else prompt + answer


def _ou_membership_scores(sc, enc: list[Encoded], tokenizer, k: float, eos: bool = True) -> dict[str, list[float]]:
    """OU's attacks, signed so that higher = member: LOSS = -avg loss over answer + EOS; zlib = -(avg loss /
    zlib bytes of the decoded labels); Min-K / Min-K++ over the answer tokens without the EOS (OU's tokenwise
    log-probs drop the last label), Min-K++ with the variance clamped at 1e-6."""
    out: dict[str, list[float]] = {m: [] for m in MIA_METRICS}
    for lp, mu, sd, e in zip(sc.logprobs, sc.mu, sc.sigma, enc, strict=True):
        lp, mu, sd = lp.double(), mu.double(), sd.double()
        avg_loss = float(-lp.mean()) if lp.numel() else math.nan
        out["loss"].append(-avg_loss)
        text = tokenizer.decode(list(e.answer_ids), skip_special_tokens=True)
        out["zlib"].append(-avg_loss / len(zlib.compress(text.encode("utf-8"))))
        cut = -1 if eos else None  # OU leaves the appended EOS out of Min-K / Min-K++
        body, body_mu, body_sd = lp[:cut], mu[:cut], sd[:cut]
        if body.numel() == 0:  # OU scores an empty span 0
            out["mink"].append(0.0)
            out["minkpp"].append(0.0)
            continue
        n_k = max(1, int(body.numel() * k))
        out["mink"].append(float(torch.sort(body).values[:n_k].mean()))
        var = (body_sd.square()).clamp_min(1e-6)
        z = (body - body_mu) / var.sqrt()
        out["minkpp"].append(float(torch.sort(z).values[:n_k].mean()))
    return out


def _membership(lm: LoadedModel, data: AuditData, cfg: ScorecardConfig):
    """Per-text membership scores on forget (label 1) vs holdout (label 0) texts, AUC and ROC per metric."""
    members = (*data.forget, *data.holdout)
    labels = np.array([1] * len(data.forget) + [0] * len(data.holdout))
    splits = ["forget"] * len(data.forget) + ["holdout"] * len(data.holdout)
    index = list(range(len(data.forget))) + list(range(len(data.holdout)))
    mode = cfg.mia_mode
    enc = [_mia_encoded(it, data.prompt_format, mode, lm.tokenizer) for it in members]
    if cfg.ou:
        eos = _eos_used(lm, cfg)
        enc = _with_eos(enc, lm.tokenizer, eos)
        sc = score_encoded(lm.model, enc, pad_id_of(lm.tokenizer), cfg.batch_size, with_stats=True)
        by_metric = _ou_membership_scores(sc, enc, lm.tokenizer, cfg.min_k, eos)
    else:
        texts = [_mia_text(it, data.prompt_format, mode) for it in members]
        sc = score_encoded(lm.model, enc, pad_id_of(lm.tokenizer), cfg.batch_size, with_stats=True)
        by_metric = membership_scores(sc, texts, cfg.min_k)
    aucs, curves, rows = {}, [], []
    for metric in MIA_METRICS:
        s = np.asarray(by_metric[metric], dtype=np.float64)
        rows += [MiaScore(lm.name, sp, i, metric, float(v)) for sp, i, v in zip(splits, index, s, strict=True)]
        aucs[metric], fpr, tpr = auc_roc(labels, s)
        if fpr:
            curves.append(RocCurve(lm.name, metric, aucs[metric], fpr, tpr))
    return aucs, curves, rows


def compute_scorecard(
    models: ModelSet,
    data: AuditData,
    config: ScorecardConfig = ScorecardConfig(),
    progress: Progress | None = None,
) -> ScorecardResult:
    """Score every checkpoint of `models` on data.forget / data.retain (and forget vs holdout MIA).

    `progress(fraction, message)` is called before each step and with 1.0 at the end; an exception it raises
    propagates unchanged and nothing is left half-done, since models are only read and results built locally.
    """
    if not isinstance(config, ScorecardConfig):
        raise TypeError(f"config must be a ScorecardConfig, got {type(config).__name__}")
    checkpoints = models.all()
    expected = 1 + len(models.unlearned) + (models.retain_only is not None)
    if len(checkpoints) != expected:
        raise ValueError(f"model names must be unique across the ModelSet, got {list(checkpoints)}")
    do_mia = bool(data.forget) and bool(data.holdout)
    total = len(checkpoints) * (2 + do_mia)
    done = 0

    def step(message: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done / total, message)
        done += 1

    from rouge_score import rouge_scorer  # nltk + scipy.stats (~1 s): only when scoring, not to read results

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=config.rouge_stemmer)
    items, roc, mia = [], [], []
    summary: dict[str, dict[str, Any]] = {}
    forget_trs: dict[str, list[float]] = {}
    for name, lm in checkpoints.items():
        row: dict[str, Any] = {c: math.nan for c in SUMMARY_COLUMNS}
        row.update(model=name, role=lm.role, definition=config.definition)
        for split in SPLITS:
            step(f"{name}: scoring the {split} set")
            res = _score_split(lm, split, getattr(data, split), data.prompt_format, config, scorer)
            items += res.rows
            for stat, attr in ITEM_FIELD.items():
                row[f"{split}_{stat}"] = mean_of(getattr(r, attr) for r in res.rows)
            row[f"{split}_truth_ratio"] = aggregate_truth_ratio(res.truth_ratios, split, ou=config.ou)
            if split == "forget":
                forget_trs[name] = res.truth_ratios
                leaked = [r.leak for r in res.rows if not math.isnan(r.leak)]
                if leaked:  # an item leaks when ANY of its k samples contains the answer
                    hits = sum(v > 0 for v in leaked)
                    row["forget_leak_at_k"] = hits / len(leaked)
                    row["forget_leak_lo"], row["forget_leak_hi"] = wilson_interval(hits, len(leaked))
            elif res.n_tokens:
                row["retain_ppl"] = math.exp(res.nll_sum / res.n_tokens)
        if do_mia:
            step(f"{name}: membership inference")
            aucs, curves, rows = _membership(lm, data, config)
            roc += curves
            mia += rows
            row.update({f"mia_auc_{m}": aucs[m] for m in MIA_METRICS})
        summary[name] = row

    for row in summary.values():
        if data.retain:
            row["model_utility"] = model_utility(row)[0]
    # comparisons against the deletion reference, once every checkpoint is scored
    ref = models.retain_only.name if models.retain_only is not None else None
    for name, row in summary.items():
        if ref is not None:
            row["forget_quality"] = forget_quality(forget_trs[name], forget_trs[ref])
        for m in MIA_METRICS:
            a_ref = summary[ref][f"mia_auc_{m}"] if ref is not None else (OU_PRIVLEAK_REF if config.ou else math.nan)
            row[f"privleak_{m}"] = privleak(row[f"mia_auc_{m}"], a_ref, ou=config.ou)

    if progress is not None:
        progress(1.0, "scorecard done")
    return ScorecardResult(
        summary=tuple(summary.values()),
        items=tuple(items),
        roc=tuple(roc),
        mia=tuple(mia),
        variants=_variants(config),
        model_hashes={name: lm.hash for name, lm in checkpoints.items()},
        data_hash=data.hash,
        config=config,
    )


def restrict_scorecard(result: ScorecardResult, names) -> ScorecardResult:
    """These checkpoints only, as computed on them: every number is the checkpoint's own except forget quality and
    PrivLeak, read against the retain-only model; without it in the subset they are what a run without one gives
    (NaN, and PrivLeak against OU's 0.5 under the open-unlearning definition)."""
    from dataclasses import replace

    from unlearn_core.analyses.common.subset import check_keeps, keep_keys, reference_of

    keep = check_keeps(names, next(r["model"] for r in result.summary if r["role"] == "original"))
    ref = reference_of(result.summary)
    ou = result.config.ou
    summary = []
    for row in result.summary:
        if row["model"] not in keep:
            continue
        row = dict(row)
        if ref is not None and ref not in keep:
            row["forget_quality"] = math.nan
            for m in MIA_METRICS:
                row[f"privleak_{m}"] = privleak(row[f"mia_auc_{m}"], OU_PRIVLEAK_REF if ou else math.nan, ou=ou)
        summary.append(row)
    return replace(result, summary=tuple(summary), items=tuple(r for r in result.items if r.model in keep),
                   roc=tuple(c for c in result.roc if c.model in keep),
                   mia=tuple(r for r in result.mia if r.model in keep),
                   model_hashes=keep_keys(result.model_hashes, keep))
