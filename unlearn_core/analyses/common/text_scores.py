"""Full-text token log-probs and the membership-inference scores computed from them.

Membership inference scores a whole text, not an answer span, so it needs log p(t_i | t_<i) for every token of
the text. Rather than a second forward-pass loop, a text is written as an `Encoded` whose "prompt" is its first
token and whose "answer" is the rest; `scoring.score_encoded` then gives the per-token log-probs (and the
next-token mean/std that Min-K%++ needs) in the same length-sorted batches as every other audit.

Every score here is signed so that HIGHER means "more likely a training member", which is what
`roc_auc_score` expects with members labelled 1.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from unlearn_core.model.scoring import AnswerScores, Encoded, pad_id_of, score_encoded

MIA_METRICS = ("loss", "zlib", "mink", "minkpp")


def encode_texts(tokenizer, texts: list[str]) -> list[Encoded]:
    """Whole texts as Encoded rows: the first token is context only (a causal LM cannot score it without a BOS).

    With a BOS-adding tokenizer (Llama) the BOS is that context token and every text token is scored.
    """
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    return [Encoded(tuple(row[:1]), tuple(row[1:])) for row in ids]


def score_texts(model, tokenizer, texts: list[str], batch_size: int = 32, with_stats: bool = True) -> AnswerScores:
    """Per-token log-probs of each text (CPU float32), batched by length; with mu/sigma for Min-K%++."""
    return score_encoded(model, encode_texts(tokenizer, texts), pad_id_of(tokenizer), batch_size, with_stats)


def _lowest_k_mean(values: torch.Tensor, k: float) -> float:
    """Mean of the floor(k * n) lowest values, at least one (the reference implementations' rounding)."""
    if values.numel() == 0:
        return math.nan
    n = max(1, int(values.numel() * k))
    return float(torch.sort(values.float()).values[:n].mean())


def loss_score(logprobs: torch.Tensor) -> float:
    """LOSS attack: mean token NLL (low for members; the membership score is its negative)."""
    return float(-logprobs.float().mean()) if logprobs.numel() else math.nan


def zlib_score(logprobs: torch.Tensor, text: str) -> float:
    """zlib attack: summed token NLL / zlib-compressed text length in bytes.

    Dividing by the compressed size calibrates for texts that are easy for any model (repetitive, common);
    the sum (not the mean) makes numerator and denominator both "total information of the text".
    """
    if logprobs.numel() == 0:
        return math.nan
    return float(-logprobs.float().sum()) / len(zlib.compress(text.encode("utf-8")))


def min_k(logprobs: torch.Tensor, k: float) -> float:
    """Min-K% prob: mean of the lowest k share of token log-probs (members have few very surprising tokens)."""
    return _lowest_k_mean(logprobs, k)


def min_k_plus_plus(logprobs: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, k: float) -> float:
    """Min-K%++: per-token (log p - E[log p]) / Std[log p] under the model's own next-token distribution.

    Normalising by the distribution's own mean/std asks "is this token a local mode?", which training pushes
    member tokens towards, independently of how peaked the distribution is at that position.
    """
    if logprobs.numel() == 0:
        return math.nan
    return _lowest_k_mean((logprobs.float() - mu.float()) / sigma.float(), k)


def membership_scores(scores: AnswerScores, texts: list[str], k: float) -> dict[str, list[float]]:
    """metric -> per-text membership score, higher = more likely member (NaN for texts with no scored token)."""
    if scores.mu is None or scores.sigma is None:
        raise ValueError("membership_scores needs AnswerScores computed with with_stats=True (Min-K%++)")
    out: dict[str, list[float]] = {m: [] for m in MIA_METRICS}
    for lp, mu, sd, text in zip(scores.logprobs, scores.mu, scores.sigma, texts, strict=True):
        out["loss"].append(-loss_score(lp))
        out["zlib"].append(-zlib_score(lp, text))
        out["mink"].append(min_k(lp, k))
        out["minkpp"].append(min_k_plus_plus(lp, mu, sd, k))
    return out


def auc_roc(labels, scores) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """(AUC, fpr, tpr) with members labelled 1; texts with a non-finite score are left out.

    AUC is NaN (and the curve empty) unless both members and non-members remain: sklearn would raise.
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    y, s = y[ok], s[ok]
    if y.size == 0 or y.min() == y.max():
        return math.nan, (), ()
    fpr, tpr, _ = roc_curve(y, s)
    return float(roc_auc_score(y, s)), tuple(map(float, fpr)), tuple(map(float, tpr))
