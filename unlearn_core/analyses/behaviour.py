"""Behavioural scorecard (methods.md section 1): the numbers the standard unlearning benchmarks report.

They say whether a checkpoint *looks* forgotten (low p~, accuracy, ROUGE-L and extraction strength on the
forget set, truth ratios like the retain-only model's, membership inference near chance) and what forgetting
cost (retain perplexity and accuracy). On their own they cannot tell suppression from deletion (the other audits
do), but every verdict needs them as its "looks forgotten" half, named by variant so tables stay comparable.

Cost: per model and split, ONE teacher-forced scoring call covers gold, paraphrased and perturbed answers
together (length-sorted batches), plus one batched greedy generation; membership inference is one more
scoring call over forget + holdout texts. Never one forward pass per item.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from rouge_score import rouge_scorer
from scipy.stats import ks_2samp

from unlearn_core.analyses.text_scores import MIA_METRICS, auc_roc, membership_scores, score_texts
from unlearn_core.codec import register_result
from unlearn_core.items import PromptFormat, QAItem
from unlearn_core.scoring import encode, greedy_generate, pad_id_of, score_encoded
from unlearn_core.spec import AnalysisSpec
from unlearn_core.types import AuditData, LoadedModel, ModelSet

MIA_TEXT_MODES = ("prompt_answer", "as_text")
SPLITS = ("forget", "retain")
_SPLIT_STATS = ("p", "token_acc", "acc", "rougeL", "truth_ratio", "es")
_ITEM_FIELD = {"p": "p", "token_acc": "token_acc", "acc": "acc", "rougeL": "rougeL_recall", "es": "es"}
SUMMARY_COLUMNS = (
    ["model", "role"]
    + [f"{s}_{m}" for s in SPLITS for m in _SPLIT_STATS]
    + ["retain_ppl", "forget_quality"]
    + [f"mia_auc_{m}" for m in MIA_METRICS]
    + [f"privleak_{m}" for m in MIA_METRICS]
)

Progress = Callable[[float, str], None]


@register_result
@dataclass(frozen=True)
class ScorecardConfig:
    """batch_size: rows per forward pass; max_new_tokens: greedy budget for ROUGE-L; min_k: Min-K% share;
    generate=False skips generation (ROUGE-L becomes NaN) for a fast pass; mia_text picks the text that
    membership inference scores: the prompt-formatted item (what a QA fine-tune saw) or `QAItem.as_text()`."""

    batch_size: int = 32
    max_new_tokens: int = 24
    min_k: float = 0.4
    rouge_stemmer: bool = True
    generate: bool = True
    mia_text: str = "prompt_answer"

    def __post_init__(self):
        for name in ("batch_size", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        k = self.min_k
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k <= 1:
            raise ValueError(f"min_k must be in (0, 1], got {k!r}")
        for name in ("rouge_stemmer", "generate"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.mia_text not in MIA_TEXT_MODES:
            raise ValueError(f"mia_text must be one of {MIA_TEXT_MODES}, got {self.mia_text!r}")


@register_result
@dataclass(frozen=True)
class ItemScore:
    """One item under one model. NaN where a metric does not apply (no paraphrase, generation off, empty answer)."""

    model: str
    split: str
    item: int  # index in data.<split>
    line: int
    question: str
    gold_answer: str
    generated_answer: str | None
    p: float
    token_acc: float
    acc: float
    rougeL_recall: float
    truth_ratio: float
    es: float


ITEM_COLUMNS = tuple(f.name for f in fields(ItemScore))


@register_result
@dataclass(frozen=True)
class MiaScore:
    """One text's membership score under one metric: higher = more likely a member (LOSS and zlib negated)."""

    model: str
    split: str  # "forget" (members) or "holdout"
    item: int
    metric: str
    score: float


@register_result
@dataclass(frozen=True)
class RocCurve:
    model: str
    metric: str
    auc: float
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]


@register_result
@dataclass(frozen=True)
class ScorecardResult:
    """Everything the scorecard page and report.json show. `summary` rows are keyed by SUMMARY_COLUMNS."""

    summary: tuple[dict[str, Any], ...]
    items: tuple[ItemScore, ...]
    roc: tuple[RocCurve, ...]
    mia: tuple[MiaScore, ...]
    variants: dict[str, str]  # metric -> variant description (stemming, truth-ratio form, k, ...)
    model_hashes: dict[str, str]
    data_hash: str
    config: ScorecardConfig

    def to_frame(self) -> pd.DataFrame:
        """Per-model summary, one row per checkpoint in ModelSet.all() order."""
        return pd.DataFrame(list(self.summary), columns=list(SUMMARY_COLUMNS))

    def items_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.items], columns=list(ITEM_COLUMNS))

    def roc_frame(self) -> pd.DataFrame:
        """Long format (model, metric, auc, fpr, tpr): one row per ROC point, ready for a line chart."""
        rows = [
            {"model": c.model, "metric": c.metric, "auc": c.auc, "fpr": f, "tpr": t}
            for c in self.roc
            for f, t in zip(c.fpr, c.tpr, strict=True)
        ]
        return pd.DataFrame(rows, columns=["model", "metric", "auc", "fpr", "tpr"])

    def mia_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.mia], columns=["model", "split", "item", "metric", "score"])

    def scores(self, model_name: str) -> dict[str, float]:
        """Flat metric -> value for one checkpoint (report.json); NaN where a metric does not apply."""
        for row in self.summary:
            if row["model"] == model_name:
                return {k: float(v) for k, v in row.items() if k not in ("model", "role")}
        raise KeyError(f"no model named {model_name!r} in this scorecard")


# ----------------------------------------------------------------------------------------------- definitions


def extraction_strength(correct: torch.Tensor) -> float:
    """ES = 1 - k*/|y|, k* = shortest answer prefix after which teacher-forced argmax yields every later token.

    With teacher forcing the prediction at step t never depends on earlier mistakes, so k* is just the index
    after the last wrong prediction: all correct -> 1, last token wrong -> 0.
    """
    n = correct.numel()
    if n == 0:
        return math.nan
    wrong = torch.nonzero(~correct.bool().flatten())
    k_star = int(wrong[-1]) + 1 if wrong.numel() else 0
    return 1.0 - k_star / n


def truth_ratio(lp_paraphrased: float, lp_perturbed: list[float]) -> float:
    """tr = p_wrong / p_correct, p_wrong = geometric mean of p~ over perturbed answers, in log space."""
    if not lp_perturbed or not math.isfinite(lp_paraphrased):
        return math.nan
    with np.errstate(over="ignore"):
        return float(np.exp(np.float64(np.mean(lp_perturbed) - lp_paraphrased)))


def aggregate_truth_ratio(values: list[float], split: str) -> float:
    """Forget: mean(min(tr, 1/tr)) (1 = cannot tell right from wrong); retain: mean(max(0, 1 - tr))."""
    trs = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if trs.size == 0:
        return math.nan
    with np.errstate(divide="ignore"):
        per_item = np.minimum(trs, 1.0 / trs) if split == "forget" else np.maximum(0.0, 1.0 - trs)
    return float(per_item.mean())


def rouge_l_recall(scorer, gold: str, generated: str) -> float:
    """ROUGE-L recall of the generation against the gold answer (share of the gold's LCS that was produced)."""
    return float(scorer.score(gold, generated)["rougeL"].recall)


def forget_quality(tr_unlearned: list[float], tr_retain_only: list[float]) -> float:
    """KS-test p-value of two models' forget-set truth ratios: high = indistinguishable from never trained on it."""
    a = [v for v in tr_unlearned if not math.isnan(v)]
    b = [v for v in tr_retain_only if not math.isnan(v)]
    if not a or not b:
        return math.nan
    return float(ks_2samp(a, b).pvalue)


def _mean(values) -> float:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return float(arr.mean()) if arr.size else math.nan


def _mean_lp(lp: torch.Tensor) -> float:
    return float(lp.mean()) if lp.numel() else math.nan


def _has_truth_ratio(item: QAItem) -> bool:
    return not item.is_passage and item.paraphrased_answer is not None and len(item.perturbed_answers) > 0


def _variants(cfg: ScorecardConfig) -> dict[str, str]:
    k = f"{cfg.min_k:g}"
    return {
        "p": "exp(mean answer-token log-prob), teacher forced",
        "token_acc": "share of answer tokens with argmax == label, teacher forced",
        "acc": "all answer tokens argmax-correct, teacher forced",
        "rougeL_recall": f"rougeL_recall_{'stemmed' if cfg.rouge_stemmer else 'unstemmed'}"
        + (f" (greedy, max_new_tokens={cfg.max_new_tokens}, cut at EOS)" if cfg.generate else " (not computed)"),
        "truth_ratio": "tr = p_wrong / p_paraphrased, p_wrong = geometric mean p~ over perturbed answers; "
        "forget: mean(min(tr, 1/tr)); retain: mean(max(0, 1 - tr))",
        "es": "1 - k*/|y|, k* = index after the last teacher-forced argmax error",
        "forget_quality": "scipy ks_2samp p-value, forget truth ratios vs the retain-only model",
        "retain_ppl": "exp(token-weighted mean NLL of retain answers)",
        "mia_text": cfg.mia_text + "; first token is context only",
        "mia_loss": "-mean token NLL",
        "mia_zlib": "-(sum token NLL / zlib-compressed bytes)",
        "mia_mink": f"min_k_{k}: mean of lowest {k} share of token log-probs",
        "mia_minkpp": f"min_k++_{k}: lowest {k} share of (log p - mu) / sigma under the next-token distribution",
        "mia_auc": "sklearn roc_auc_score, forget = members = positive, holdout = negative",
        "privleak": "(AUC - AUC_retain_only) / AUC_retain_only * 100",
    }


# ------------------------------------------------------------------------------------------------- scoring


@dataclass
class _SplitScores:
    rows: list[ItemScore]
    truth_ratios: list[float]  # per item, NaN where the item has no paraphrase/perturbations
    nll_sum: float  # summed gold-answer NLL (perplexity is token-weighted)
    n_tokens: int


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
        if _has_truth_ratio(it):
            for alt in (it.paraphrased_answer, *it.perturbed_answers):
                prompts.append(prompts[i])
                answers.append(fmt.pair(it, alt)[1])
                owners.append(i)
    sc = score_encoded(lm.model, encode(lm.tokenizer, prompts, answers), pad_id_of(lm.tokenizer), cfg.batch_size)
    lps = [_mean_lp(lp) for lp in sc.logprobs]
    alt_lps: dict[int, list[float]] = {}
    for j, owner in enumerate(owners):
        alt_lps.setdefault(owner, []).append(lps[n + j])  # [paraphrased, *perturbed] in order
    trs = [truth_ratio(alt_lps[i][0], alt_lps[i][1:]) if i in alt_lps else math.nan for i in range(n)]

    generated: list[str | None] = [None] * n
    if cfg.generate:
        generated = greedy_generate(lm.model, lm.tokenizer, prompts[:n], cfg.max_new_tokens, cfg.batch_size)

    rows = []
    for i, it in enumerate(items):
        correct = sc.correct[i]
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
                es=extraction_strength(correct),
            )
        )
    nll = float(sum(-sc.logprobs[i].sum() for i in range(n)))
    return _SplitScores(rows, trs, nll, sum(sc.logprobs[i].numel() for i in range(n)))


def _mia_text(item: QAItem, fmt: PromptFormat, mode: str) -> str:
    if mode == "as_text":
        return item.as_text()
    prompt, answer = fmt.pair(item)
    return prompt + answer


def _membership(lm: LoadedModel, data: AuditData, cfg: ScorecardConfig):
    """Per-text membership scores on forget (label 1) vs holdout (label 0) texts, AUC and ROC per metric."""
    texts = [_mia_text(it, data.prompt_format, cfg.mia_text) for it in (*data.forget, *data.holdout)]
    labels = np.array([1] * len(data.forget) + [0] * len(data.holdout))
    splits = ["forget"] * len(data.forget) + ["holdout"] * len(data.holdout)
    index = list(range(len(data.forget))) + list(range(len(data.holdout)))
    by_metric = membership_scores(score_texts(lm.model, lm.tokenizer, texts, cfg.batch_size), texts, cfg.min_k)
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

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=config.rouge_stemmer)
    items, roc, mia = [], [], []
    summary: dict[str, dict[str, Any]] = {}
    forget_trs: dict[str, list[float]] = {}
    for name, lm in checkpoints.items():
        row: dict[str, Any] = {c: math.nan for c in SUMMARY_COLUMNS}
        row.update(model=name, role=lm.role)
        for split in SPLITS:
            step(f"{name}: scoring the {split} set")
            res = _score_split(lm, split, getattr(data, split), data.prompt_format, config, scorer)
            items += res.rows
            for stat, attr in _ITEM_FIELD.items():
                row[f"{split}_{stat}"] = _mean(getattr(r, attr) for r in res.rows)
            row[f"{split}_truth_ratio"] = aggregate_truth_ratio(res.truth_ratios, split)
            if split == "forget":
                forget_trs[name] = res.truth_ratios
            elif res.n_tokens:
                row["retain_ppl"] = math.exp(res.nll_sum / res.n_tokens)
        if do_mia:
            step(f"{name}: membership inference")
            aucs, curves, rows = _membership(lm, data, config)
            roc += curves
            mia += rows
            row.update({f"mia_auc_{m}": aucs[m] for m in MIA_METRICS})
        summary[name] = row

    # comparisons against the deletion reference, once every checkpoint is scored
    if models.retain_only is not None:
        ref = models.retain_only.name
        for name, row in summary.items():
            row["forget_quality"] = forget_quality(forget_trs[name], forget_trs[ref])
            for m in MIA_METRICS:
                a, a_ref = row[f"mia_auc_{m}"], summary[ref][f"mia_auc_{m}"]
                if not math.isnan(a) and not math.isnan(a_ref) and a_ref > 0:
                    row[f"privleak_{m}"] = (a - a_ref) / a_ref * 100.0

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


SPEC = AnalysisSpec(
    name="scorecard", title="Behavioural scorecard", default_config=ScorecardConfig, compute=compute_scorecard,
    tables=lambda r: {"scorecard_summary": r.to_frame(), "scorecard_items": r.items_frame(),
                      "scorecard_roc": r.roc_frame()},
    scores=lambda r, name: r.scores(name),
)
