"""Prompt-variant probe (methods.md section 7): the cheapest black-box attacks of published audits, at any model size.

An attacker who holds only the checkpoint asks the forget questions in other ways: in other words (the item's
paraphrased question), after a few retain QA pairs (few-shot context), with an affirmative answer prefix ("Sure,
here is the answer:"), or as a multiple-choice question over the gold and perturbed answers. Suppression that keys
on the trained question's surface form, or on the first answer token, lets such prompts through; a deletion does
not (knowledge a model never had does not come back by asking nicely). Every prompt goes through the audit's
PromptFormat (prompts.py says how a chat format renders each variant), and every model is asked the SAME prompts.

Scores. The p~ variants (paraphrase, few_shot, prime) read the gold answer's mean token probability p~ under
teacher forcing (model.scoring), the unit of every other probe. Multiple choice reads the probability mass on the
gold letter normalised over the option letters (chance = 1/n_options; a letter the tokenizer writes as several
tokens, as the demo lab's does " A", gets its whole string's probability, the same for every model asked): other
units, and the options include the gold answer itself, so it is reported in its own table (its level excess
calibrated in its own units: the control's multiple-choice mass is its plain level there) and is NOT part of the
evidence. A prompt longer than a model's position table is dropped for that variant and item on every model.

Verdict evidence "prompt_variant_recovery": per item, the best p~ over the p~ variants (the attacker picks the best
prompt per item; the control gets the same max over the same prompts, so the calibration stays fair), against the
plain p~. An item no p~ variant applies to keeps its plain p~ as its best. Forget and holdout splits for every model
the audit loads (original, unlearned, retain-only reference), so the calibration can use the reference on the same
items or, without it, the checkpoint's holdout split. Never reads the original's weights or states, nor any forget
answer: axis "recoverable".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.common.probes import (
    PLAIN,
    SUMMARY_COLUMNS,
    ItemTable,
    check_int,
    probe_items,
    probe_scores,
    put,
)
from unlearn_core.analyses.prompt_variants.prompts import (
    BEST,
    MC,
    VARIANTS,
    ChoicePrompt,
    choice_prompts,
    few_shot_pairs,
    paraphrase_pairs,
    prime_pairs,
    shot_pool,
)
from unlearn_core.analyses.prompt_variants.tables import (
    CONTROL,
    MC_COLUMNS,
    SUMMARY_EXTRA,
    choice_rows,
    example_rows,
    summary_rows,
)
from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope
from unlearn_core.model.scoring import encode, pad_id_of, score_encoded
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress


@register_result
@dataclass(frozen=True)
class PromptVariantsConfig:
    """k_shots: retain QA pairs before the question (0 = no few-shot variant); prime: the assistant prefix (no answer
    text); multiple_choice: also ask the question as multiple choice; seed: which shots and which option order;
    max_retain: retain items scored for the side-effect columns (the shot pool is the whole retain split)."""

    k_shots: int = 3
    prime: str = "Sure, here is the answer:"
    multiple_choice: bool = True
    seed: int = 0
    max_retain: int = 64
    batch_size: int = 32

    def __post_init__(self):
        check_int("k_shots", self.k_shots, 0)
        check_int("seed", self.seed, 0)
        check_int("max_retain", self.max_retain, 0)
        check_int("batch_size", self.batch_size)
        if not isinstance(self.prime, str) or not self.prime.strip():
            raise ValueError(f"prime must be a non-empty text, got {self.prime!r}")
        if not isinstance(self.multiple_choice, bool):
            raise TypeError("multiple_choice must be a bool")


@register_result
@dataclass(frozen=True)
class PromptVariantsResult:
    summary: tuple[dict, ...]  # SUMMARY_COLUMNS + SUMMARY_EXTRA: one row per (checkpoint, variant); "plain" first
    choice: tuple[dict, ...]  # MC_COLUMNS: one row per (checkpoint, split) of the multiple-choice reading
    notes: tuple[str, ...]  # skipped items and why
    model_hashes: dict[str, str]
    data_hash: str
    config: PromptVariantsConfig
    # per-item scores: split -> model -> variant -> [n] (NaN where the variant does not apply); MC's gold mass too
    items: ItemTable = field(default_factory=dict)
    chance: dict[str, np.ndarray] = field(default_factory=dict)  # split -> 1/n_options per item (NaN: no MC)
    shots: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)  # split -> retain indices per item
    examples: tuple[dict, ...] = ()  # the first forget item's prompt under each variant, as sent

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.summary), columns=list(SUMMARY_COLUMNS + SUMMARY_EXTRA))

    def choice_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.choice), columns=list(MC_COLUMNS))

    def examples_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.examples), columns=["variant", "prompt", "scored_continuation"])

    def scores(self, model_name: str) -> dict[str, float]:
        out = probe_scores(self.summary, model_name, "prompt_variants")
        for r in self.choice:
            if r["model"] == model_name and r["split"] == "forget":
                out["prompt_variants_mc_gold_mass"] = float(r["gold_mass"])
                out["prompt_variants_mc_accuracy"] = float(r["accuracy"])
        return out

    def evidence_items(self) -> dict:
        label = "best of " + ", ".join(v for v in VARIANTS if self._ran(v)) + " per item"
        return {EVIDENCE.key: probe_items(self.items, EVIDENCE.key, BEST, label)}

    def _ran(self, variant: str) -> bool:
        return any(np.isfinite(a.get(variant, np.array([]))).any() for a in self.items.get("forget", {}).values())


EVIDENCE = Evidence("prompt_variant_recovery", "Prompt variants (best prompt per item)", CONTROL,
                    axis="recoverable", counted=False,
                    why_not="does not separate the planted controls on the demo labs (tiny lab, against the "
                    "reference: suppressed_head -0.06 [-0.14, -0.02], retrained +0.01 [-0.01, +0.03]): models this "
                    "small barely answer a reworded question; shown, and counted once a real-model lab's validity "
                    "table says it separates",
                    level="forget answer p~ under the best of the paraphrased, few-shot and answer-prefix prompts")


def _variant_pairs(items: list, split: str, data: AuditData, pool: list[int], cfg: PromptVariantsConfig):
    """variant -> per-item (prompt, answer) or None, and the shots used (model-independent text, built once)."""
    fmt, retain = data.prompt_format, list(data.retain)
    few, used = (few_shot_pairs(items, retain, pool, fmt, cfg.k_shots, cfg.seed, split) if cfg.k_shots
                 else ([None] * len(items), tuple(() for _ in items)))
    pairs = {PLAIN: [fmt.pair(it) for it in items], "paraphrase": paraphrase_pairs(items, fmt), "few_shot": few,
             "prime": prime_pairs(items, fmt, cfg.prime)}
    return pairs, used


def context_limit(lm: LoadedModel) -> int | None:
    """The longest sequence the model's position table takes (None: not stated)."""
    cfg = getattr(lm.model, "config", None)
    ctx = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    return ctx if isinstance(ctx, int) and ctx > 0 else None


def _fits(enc, ctx: int | None) -> list[bool]:
    return [ctx is None or len(e.prompt_ids) + len(e.answer_ids) <= ctx for e in enc]


def _score_pairs(lm: LoadedModel, pairs: dict[str, list], batch_size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """variant -> (p~ [n], accuracy [n]) with NaN where the variant does not apply or its prompt does not fit the
    model's context: every variant's prompts of one split in ONE batched teacher-forced pass (length-sorted batches
    across items and variants)."""
    flat = [(v, i, pq) for v, ps in pairs.items() for i, pq in enumerate(ps) if pq is not None]
    out = {v: (np.full(len(ps), np.nan), np.full(len(ps), np.nan)) for v, ps in pairs.items()}
    if not flat:
        return out
    enc = encode(lm.tokenizer, [pq[0] for _, _, pq in flat], [pq[1] for _, _, pq in flat])
    keep = [k or f[0] == PLAIN for f, k in zip(flat, _fits(enc, context_limit(lm)))]  # plain: as every probe
    flat, enc = [f for f, k in zip(flat, keep) if k], [e for e, k in zip(enc, keep) if k]
    sc = score_encoded(lm.model, enc, pad_id_of(lm.tokenizer), batch_size=batch_size)
    p, acc = sc.prob().double().numpy(), sc.accuracy().double().numpy()
    for j, (v, i, _) in enumerate(flat):
        out[v][0][i], out[v][1][i] = p[j], acc[j]
    return out


def _score_choices(lm: LoadedModel, prompts: list[ChoicePrompt | None],
                   batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(gold-letter mass [n], 1 where the gold letter has the most mass [n]), NaN where no MC prompt (or it does not
    fit the context): each option's letter is scored as a continuation of the item's prompt (all letters of an item
    share its prompt, run once on its KV cache), the letters' probabilities (summed log-probs where a letter is
    several tokens) normalised over the options."""
    mass, acc = np.full(len(prompts), np.nan), np.full(len(prompts), np.nan)
    ctx = context_limit(lm)
    asked = [(i, c) for i, c in enumerate(prompts) if c is not None]
    encs = {i: encode(lm.tokenizer, [c.prompt] * len(c.letters), list(c.letters)) for i, c in asked}
    asked = [(i, c) for i, c in asked if all(_fits(encs[i], ctx))]
    if not asked:
        return mass, acc
    enc = [e for i, _ in asked for e in encs[i]]
    sc = score_encoded(lm.model, enc, pad_id_of(lm.tokenizer), batch_size=batch_size, share_prompts=True)
    total = torch.stack([lp.sum() for lp in sc.logprobs]).double()  # [options over all items]
    j = 0
    for i, c in asked:
        probs = torch.softmax(total[j:j + len(c.letters)], 0)
        mass[i], acc[i] = float(probs[c.gold]), float(probs.argmax() == c.gold)
        j += len(c.letters)
    return mass, acc


def _pair_up(items: ItemTable, acc: dict, asked: dict[tuple[str, str], np.ndarray]) -> dict[tuple[str, str], int]:
    """An item a variant could not score on some model (its prompt too long there) is dropped for that variant on
    every model: the control must be asked the same prompts. asked: (split, variant) -> [n] bool, where the variant
    applies. Returns (split, variant) -> items dropped."""
    dropped = {}
    for split, by_model in items.items():
        variants = {v for m in by_model.values() for v in m if v not in (PLAIN, BEST)}
        for v in variants:
            arrays = [m[v] for m in by_model.values() if v in m]
            ok = np.logical_and.reduce([np.isfinite(a) for a in arrays])
            lost = int((asked[(split, v)] & ~ok).sum())
            if lost:
                dropped[(split, v)] = lost
            for name, m in by_model.items():
                if v in m:
                    m[v] = np.where(ok, m[v], np.nan)
                    if (split, name, v) in acc:
                        acc[(split, name, v)] = np.where(ok, acc[(split, name, v)], np.nan)
    return dropped


def _best(table: dict[str, np.ndarray], acc: dict, split: str, name: str) -> None:
    """BEST = per item the max p~ over VARIANTS (plain where none applies); its accuracy likewise."""
    stack = np.stack([table[v] for v in VARIANTS])  # [variants, n]
    none = ~np.isfinite(stack).any(0)
    table[BEST] = np.where(none, table[PLAIN], np.nanmax(np.where(np.isfinite(stack), stack, -np.inf), 0))
    best_acc = np.maximum.reduce([np.nan_to_num(acc[(split, name, v)]) for v in VARIANTS])
    acc[(split, name, BEST)] = np.where(none, acc[(split, name, PLAIN)], best_acc)


def compute_prompt_variants(models: ModelSet, data: AuditData,
                            config: PromptVariantsConfig = PromptVariantsConfig(),
                            progress: Progress | None = None) -> PromptVariantsResult:
    if not isinstance(config, PromptVariantsConfig):
        raise TypeError(f"config must be a PromptVariantsConfig, got {type(config).__name__}")
    splits = {"forget": list(data.forget), "holdout": list(data.holdout),
              "retain": list(data.retain[:config.max_retain])}
    pool = shot_pool(list(data.retain), [it.answer for it in data.forget + data.holdout if not it.is_passage])
    notes: list[str] = []
    texts, shots, choices = {}, {}, {}
    for split, items in splits.items():
        texts[split], shots[split] = _variant_pairs(items, split, data, pool, config)
        choices[split] = choice_prompts(items, data.prompt_format, config.seed, split) \
            if config.multiple_choice and split != "retain" else [None] * len(items)
    _note_skips(notes, texts, choices, config, len(pool), len(data.retain))
    chance = {s: np.array([c.chance if c is not None else np.nan for c in choices[s]]) for s in ("forget", "holdout")}
    targets = list(models.all().values())
    items: ItemTable = {}
    acc: dict[tuple[str, str, str], np.ndarray] = {}
    for n, lm in enumerate(targets):
        if progress is not None:
            progress(n / len(targets), f"{lm.name}: {len(VARIANTS)} prompt variants"
                     + (" and multiple choice" if config.multiple_choice else ""))
        for split, items_ in splits.items():
            if not items_:
                continue
            scored = _score_pairs(lm, texts[split], config.batch_size)
            for v, (p, a) in scored.items():
                put(items, split, lm.name, v, p)
                acc[(split, lm.name, v)] = a
            if split != "retain" and any(c is not None for c in choices[split]):
                m, a = _score_choices(lm, choices[split], config.batch_size)
                put(items, split, lm.name, MC, m)
                acc[(split, lm.name, MC)] = a
    asked = {(split, v): np.array([x is not None for x in pairs]) for split in splits
             for v, pairs in (*texts[split].items(), (MC, choices[split]))}
    for (split, v), lost in _pair_up(items, acc, asked).items():
        notes.append(f"{v}: {lost} {split} items dropped: the prompt does not fit a model's context (dropped for every "
                     "model: the control is asked the same prompts)")
    for split, by_model in items.items():
        for name, table in by_model.items():
            _best(table, acc, split, name)
    if progress is not None:
        progress(1.0, "prompt variants done")
    ref = models.retain_only.name if models.retain_only is not None else None
    summary = summary_rows(items, acc, targets, models.original.name, ref)
    choice = choice_rows(items, acc, chance, targets, models.original.name, ref)
    if not data.holdout:
        notes.append("no holdout split: the evidence can only be calibrated against a retain-only reference")
    return PromptVariantsResult(tuple(summary), tuple(choice), tuple(notes),
                                {n: m.hash for n, m in models.all().items()}, data.hash, config, items, chance,
                                shots, tuple(example_rows(texts, choices)))


def _note_skips(notes: list[str], texts: dict, choices: dict, cfg: PromptVariantsConfig, n_pool: int,
                n_retain: int) -> None:
    n = len(texts["forget"][PLAIN])
    for v, why in (("paraphrase", "no paraphrased_question"), ("prime", "a passage, or its answer occurs in the prime"),
                   ("few_shot", "no usable retain pair")):
        skipped = sum(x is None for x in texts["forget"][v])
        if skipped and not (v == "few_shot" and cfg.k_shots == 0):
            notes.append(f"{v}: {skipped} of {n} forget items skipped ({why})")
    if cfg.k_shots == 0:
        notes.append("few_shot: off (k_shots = 0)")
    elif n_pool < n_retain:
        notes.append(f"few_shot: {n_retain - n_pool} of {n_retain} retain items never drawn as shots (a passage, or "
                     "their text contains a forget or holdout answer)")
    if cfg.multiple_choice:
        skipped = sum(c is None for c in choices["forget"])
        if skipped:
            notes.append(f"multiple choice: {skipped} of {n} forget items skipped (no perturbed answers, or a passage)")


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.prompt_variants.plots import plot_multiple_choice, plot_prompt_variants

    return {"prompt_variants": plot_prompt_variants(r, "forget_p"), "prompt_variants_mc": plot_multiple_choice(r)}


SPEC = AnalysisSpec(
    "prompt_variants", "Prompt-variant probe", PromptVariantsConfig, compute_prompt_variants,
    lambda r: {"prompt_variants_summary": r.to_frame(), "prompt_variants_multiple_choice": r.choice_frame(),
               "prompt_variants_examples": r.examples_frame()},
    lambda r, name: r.scores(name),
    evidence=(EVIDENCE,),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Prompt variants",
    icon=":material/edit_note:",
    plots=_plots,
    cost_rank=3,
    default_evidence=False,
    scope=Scope("whether the answers come back when the question is rephrased, preceded by a few retain QA pairs, "
                "answered after an affirmative prefix, or asked as multiple choice (black box, any model size)",
                "suppression that holds against every prompt tried; knowledge no prompt of this small set reaches"),
)
