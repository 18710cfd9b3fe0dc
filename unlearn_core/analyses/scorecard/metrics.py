"""The scorecard's metric definitions (open-unlearning's and the project's), as pure functions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.stats import hmean, ks_2samp

from unlearn_core.analyses.scorecard.result import OU_EPS
from unlearn_core.data.items import QAItem


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


def extraction_strength_ou(correct: torch.Tensor) -> float:
    """Extraction strength as open-unlearning's loop computes it: the first k with preds[k:] == labels[k:], and
    k = |y| - 1 when there is none, so a wrong LAST token gives 1/|y| (the paper, and `extraction_strength`, 0)."""
    c = correct.bool().flatten()
    n = c.numel()
    if n == 0:
        return 0.0  # OU scores an empty span 0
    k = 0
    for k in range(n):
        if bool(c[k:].all()):
            break
    return 1.0 - k / n


def truth_ratio(lp_paraphrased: float, lp_perturbed: list[float], ou: bool = False) -> float:
    """tr = p_wrong / p_correct, p_wrong = geometric mean of p~ over perturbed answers (in log space); with
    ou=True exactly OU's float expression exp(-mean loss_wrong) / (exp(-loss_correct) + 1e-10)."""
    if not lp_perturbed or not math.isfinite(lp_paraphrased):
        return math.nan
    with np.errstate(over="ignore"):
        if ou:
            wrong = np.exp(np.float64(np.mean(lp_perturbed)))
            return float(wrong / (np.exp(np.float64(lp_paraphrased)) + OU_EPS))
        return float(np.exp(np.float64(np.mean(lp_perturbed) - lp_paraphrased)))


def aggregate_truth_ratio(values: list[float], split: str, ou: bool = False) -> float:
    """Forget: mean(min(tr, 1/tr)) (1 = cannot tell right from wrong; OU's `closer_to_1_better`, which adds 1e-10
    under 1/tr); retain: mean(max(0, 1 - tr)) (OU's `true_better`). NaN items (no paraphrase) are left out."""
    trs = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if trs.size == 0:
        return math.nan
    with np.errstate(divide="ignore"):
        inv = 1.0 / (trs + OU_EPS) if ou else 1.0 / trs
        per_item = np.minimum(trs, inv) if split == "forget" else np.maximum(0.0, 1.0 - trs)
    return float(per_item.mean())


def privleak(auc: float, auc_ref: float, ou: bool = False) -> float:
    """MUSE's PrivLeak: (AUC_ref - AUC) / (1 - AUC_ref) x 100, AUC = 1 when forget texts look like members.

    0 = as private as the retain-only model; strongly negative = the forget set still reads as training data
    (a memorising model: -100 against a reference at 0.5); positive = under-memorised. OU computes it as
    ((1-AUC) - (1-AUC_ref)) / ((1-AUC_ref) + 1e-10) x 100, which ou=True reproduces to the last bit; the own
    variant gives NaN instead of dividing by 1e-10 when the reference AUC is 1.
    """
    if math.isnan(auc) or math.isnan(auc_ref):
        return math.nan
    score, ref = 1.0 - auc, 1.0 - auc_ref
    if ou:
        return (score - ref) / (ref + OU_EPS) * 100.0
    return (score - ref) / ref * 100.0 if ref > 0 else math.nan


def model_utility(row: dict[str, Any]) -> tuple[float, list[str]]:
    """OU's model utility: harmonic mean of retain p~, retain ROUGE-L recall and retain truth ratio (true_better).

    OU also averages real-authors and world-facts splits in; the audit has only the retain split, so the number is
    over the retain components present, and the second value names what is missing.
    """
    parts = {"retain_p": row.get("retain_p"), "retain_rougeL": row.get("retain_rougeL"),
             "retain_truth_ratio": row.get("retain_truth_ratio")}
    have = [float(v) for v in parts.values() if v is not None and not math.isnan(v)]
    missing = [k for k, v in parts.items() if v is None or math.isnan(v)] + ["real_authors", "world_facts"]
    if not have:
        return math.nan, missing
    if min(have) <= 0:
        return 0.0, missing
    return float(hmean(have)), missing


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


def mean_of(values) -> float:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return float(arr.mean()) if arr.size else math.nan


def mean_lp(lp: torch.Tensor) -> float:
    return float(lp.mean()) if lp.numel() else math.nan


def has_truth_ratio(item: QAItem) -> bool:
    return not item.is_passage and item.paraphrased_answer is not None and len(item.perturbed_answers) > 0



def normalise_text(text: str) -> str:
    return " ".join(text.lower().split())


def answer_in(gold: str, sample: str) -> bool:
    """leak@k's hit: the gold answer appears in the sample, case- and whitespace-insensitive."""
    g = normalise_text(gold)
    return bool(g) and g in normalise_text(sample)


def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at 0 and 1 hits and for the few items an audit has."""
    if n == 0:
        return math.nan, math.nan
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
