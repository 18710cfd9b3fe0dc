"""Behavioural scorecard (methods.md section 1): the numbers the standard unlearning benchmarks report.

They say whether a checkpoint *looks* forgotten (low p~, accuracy, ROUGE-L and extraction strength on the
forget set, truth ratios like the retain-only model's, membership inference near chance) and what forgetting
cost (retain perplexity and accuracy). On their own they cannot tell suppression from deletion (the other audits
do), but every verdict needs them as its "looks forgotten" half, named by variant so tables stay comparable.

Two definitions (`ScorecardConfig.definition`), and every table row names the one that made it:
- "open-unlearning" (default): open-unlearning's exact spans and formulas, so numbers sit beside published TOFU /
  MUSE tables: EOS appended to every answer and counted in p~ and the truth ratio, membership inference on the
  answer only (prompt as context; Min-K/Min-K++ leave the EOS out, zlib = mean loss / zlib bytes of the answer),
  200 new tokens for ROUGE-L, extraction strength as OU's loop computes it (1/|y| when the last token is wrong),
  1e-10 guards in the truth ratio, PrivLeak with a 0.5 reference AUC when no retain-only model is loaded.
- "own": the project's variant: no EOS, prompt + answer as the MIA text, zlib = summed loss / zlib bytes, 24 new
  tokens, extraction strength by the paper (0 when the last token is wrong).
PrivLeak is MUSE's in both: (AUC_ref - AUC) / (1 - AUC_ref) x 100, AUC = 1 when forget texts look like members.

Cost: per model and split, ONE teacher-forced scoring call covers gold, paraphrased and perturbed answers
together (length-sorted batches), plus one batched greedy generation; membership inference is one more
scoring call over forget + holdout texts. Never one forward pass per item.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from rouge_score import rouge_scorer
from scipy.stats import hmean, ks_2samp

from unlearn_core.analyses.text_scores import MIA_METRICS, auc_roc, encode_texts, membership_scores
from unlearn_core.codec import register_result
from unlearn_core.items import PromptFormat, QAItem
from unlearn_core.scoring import Encoded, encode, greedy_generate, pad_id_of, score_encoded
from unlearn_core.spec import AnalysisSpec
from unlearn_core.types import AuditData, LoadedModel, ModelSet

OU = "open-unlearning"
OWN = "own"
DEFINITIONS = (OU, OWN)
MIA_TEXT_MODES = ("answer", "prompt_answer", "as_text")
# what a definition fixes unless the config overrides it: greedy budget for ROUGE-L and the MIA text
_DEFINITION_DEFAULTS = {OU: {"max_new_tokens": 200, "mia_text": "answer"},
                        OWN: {"max_new_tokens": 24, "mia_text": "prompt_answer"}}
OU_EPS = 1e-10  # open-unlearning's guard in the truth ratio, its aggregator and PrivLeak
OU_PRIVLEAK_REF = 0.5  # open-unlearning's `ref_value` when no retain-only model's AUC is available
SPLITS = ("forget", "retain")
_SPLIT_STATS = ("p", "token_acc", "acc", "rougeL", "truth_ratio", "es")
_ITEM_FIELD = {"p": "p", "token_acc": "token_acc", "acc": "acc", "rougeL": "rougeL_recall", "es": "es"}
SUMMARY_COLUMNS = (
    ["model", "role", "definition"]
    + [f"{s}_{m}" for s in SPLITS for m in _SPLIT_STATS]
    + ["retain_ppl", "forget_quality", "model_utility", "forget_leak_at_k", "forget_leak_lo", "forget_leak_hi"]
    + [f"mia_auc_{m}" for m in MIA_METRICS]
    + [f"privleak_{m}" for m in MIA_METRICS]
)

Progress = Callable[[float, str], None]


@register_result
@dataclass(frozen=True)
class ScorecardConfig:
    """definition: "open-unlearning" (comparable with published TOFU/MUSE numbers) or "own" (module docstring);
    batch_size: rows per forward pass; max_new_tokens: greedy budget for ROUGE-L (None: the definition's, 200 or
    24); min_k: Min-K% share; generate=False skips generation (ROUGE-L becomes NaN) for a fast pass; mia_text picks
    what membership inference scores (None: the definition's): the answer after its prompt ("answer", OU), the
    prompt-formatted item ("prompt_answer", what a QA fine-tune saw) or `QAItem.as_text()`."""

    batch_size: int = 32
    max_new_tokens: int | None = None
    min_k: float = 0.4
    rouge_stemmer: bool = True
    generate: bool = True
    mia_text: str | None = None
    definition: str = OU
    leak_k: int = 0  # leak@k: samples per forget question (0 = off: k samples cost k generations)
    leak_temperature: float = 1.0
    leak_seed: int = 0

    def __post_init__(self):
        if self.definition not in DEFINITIONS:
            raise ValueError(f"definition must be one of {DEFINITIONS}, got {self.definition!r}")
        for name in ("batch_size", "max_new_tokens"):
            value = getattr(self, name)
            if value is None and name == "max_new_tokens":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        k = self.min_k
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k <= 1:
            raise ValueError(f"min_k must be in (0, 1], got {k!r}")
        for name in ("rouge_stemmer", "generate"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if isinstance(self.leak_k, bool) or not isinstance(self.leak_k, int) or self.leak_k < 0:
            raise ValueError(f"leak_k must be an int >= 0, got {self.leak_k!r}")
        t = self.leak_temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ValueError(f"leak_temperature must be > 0, got {t!r}")
        if self.mia_text is not None and self.mia_text not in MIA_TEXT_MODES:
            raise ValueError(f"mia_text must be one of {MIA_TEXT_MODES}, got {self.mia_text!r}")

    @property
    def new_tokens(self) -> int:
        """The greedy budget actually used: the explicit one, else the definition's."""
        return self.max_new_tokens or _DEFINITION_DEFAULTS[self.definition]["max_new_tokens"]

    @property
    def mia_mode(self) -> str:
        return self.mia_text or _DEFINITION_DEFAULTS[self.definition]["mia_text"]

    @property
    def ou(self) -> bool:
        return self.definition == OU


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
    leak: float = math.nan  # share of the leak_k samples that contain the gold answer (forget split; NaN when off)


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
        """One row per (model, split, item), with the definition that made the numbers."""
        df = pd.DataFrame([asdict(r) for r in self.items], columns=list(ITEM_COLUMNS))
        df["definition"] = self.config.definition
        return df

    def roc_frame(self) -> pd.DataFrame:
        """Long format (model, metric, auc, fpr, tpr): one row per ROC point, ready for a line chart."""
        rows = [
            {"model": c.model, "metric": c.metric, "auc": c.auc, "fpr": f, "tpr": t}
            for c in self.roc
            for f, t in zip(c.fpr, c.tpr, strict=True)
        ]
        df = pd.DataFrame(rows, columns=["model", "metric", "auc", "fpr", "tpr"])
        df["definition"] = self.config.definition
        return df

    def mia_frame(self) -> pd.DataFrame:
        df = pd.DataFrame([asdict(r) for r in self.mia], columns=["model", "split", "item", "metric", "score"])
        df["definition"] = self.config.definition
        return df

    def scores(self, model_name: str) -> dict[str, float]:
        """Flat metric -> value for one checkpoint (report.json); NaN where a metric does not apply."""
        for row in self.summary:
            if row["model"] == model_name:
                return {k: float(v) for k, v in row.items() if k not in ("model", "role", "definition")}
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


def _mean(values) -> float:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return float(arr.mean()) if arr.size else math.nan


def _mean_lp(lp: torch.Tensor) -> float:
    return float(lp.mean()) if lp.numel() else math.nan


def _has_truth_ratio(item: QAItem) -> bool:
    return not item.is_passage and item.paraphrased_answer is not None and len(item.perturbed_answers) > 0


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


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def answer_in(gold: str, sample: str) -> bool:
    """leak@k's hit: the gold answer appears in the sample, case- and whitespace-insensitive."""
    g = _norm(gold)
    return bool(g) and g in _norm(sample)


def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at 0 and 1 hits and for the few items an audit has."""
    if n == 0:
        return math.nan, math.nan
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@torch.no_grad()
def sample_generate(lm: LoadedModel, prompts: list[str], k: int, temperature: float, max_new_tokens: int,
                    batch_size: int, seed: int) -> list[list[str]]:
    """k sampled continuations per prompt (cut at EOS), seeded; the global RNG is left as it was.

    Greedy decoding shows the single most likely answer; sampling at temperature T shows whether the answer still
    has real probability mass, which is what leaks when a deployed model samples."""
    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    pad = pad_id_of(tok)
    enc = tok(list(prompts), add_special_tokens=True)["input_ids"]
    out: list[list[str]] = [[] for _ in prompts]
    rows = max(1, batch_size // k)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), rows):
            batch = list(range(start, min(len(prompts), start + rows)))
            width = max(len(enc[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(batch):
                ids[r, width - len(enc[i]):] = torch.tensor(enc[i])
                mask[r, width - len(enc[i]):] = 1
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                 temperature=float(temperature), top_k=0, top_p=1.0, num_return_sequences=k,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tok.eos_token_id)
            for j in range(gen.shape[0]):
                new = gen[j, width:].tolist()
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
        if _has_truth_ratio(it):
            for alt in (it.paraphrased_answer, *it.perturbed_answers):
                prompts.append(prompts[i])
                answers.append(fmt.pair(it, alt)[1])
                owners.append(i)
    eos = _eos_used(lm, cfg)
    enc = _with_eos(encode(lm.tokenizer, prompts, answers), lm.tokenizer, eos)
    sc = score_encoded(lm.model, enc, pad_id_of(lm.tokenizer), cfg.batch_size)
    lps = [_mean_lp(lp) for lp in sc.logprobs]  # p~ and truth ratio: over the EOS too when the definition adds it
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
            for stat, attr in _ITEM_FIELD.items():
                row[f"{split}_{stat}"] = _mean(getattr(r, attr) for r in res.rows)
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


SPEC = AnalysisSpec(
    name="scorecard", title="Behavioural scorecard", default_config=ScorecardConfig, compute=compute_scorecard,
    tables=lambda r: {"scorecard_summary": r.to_frame(), "scorecard_items": r.items_frame(),
                      "scorecard_roc": r.roc_frame()},
    scores=lambda r, name: r.scores(name),
)
