"""compute_attribution: every checkpoint attributed on the same (prompt, target) pairs."""

from __future__ import annotations

import numpy as np

from unlearn_core.analyses.attribution.methods import (
    adaptive_integrated_gradients,
    keyword_mask,
    leave_one_out,
    prompt_layout,
    romberg_integrated_gradients,
)
from unlearn_core.analyses.attribution.result import AttributionConfig, AttributionResult, ItemAttribution
from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.model.scoring import Encoded, greedy_generate, pad_id_of, score_encoded
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress

MIN_RETAIN = 32


def split_items(data: AuditData, split: str, cfg: AttributionConfig) -> list[tuple[int, QAItem]]:
    """(index in the split, item) of the prompts attributed: the first max_items, and of retain an evenly spread
    sample of retain_items (default: as many as the forget prompts, at least MIN_RETAIN)."""
    items = getattr(data, split)
    idx = list(range(min(len(items), cfg.max_items) if cfg.max_items else len(items)))
    if split == "retain":
        n_forget = min(len(data.forget), cfg.max_items) if cfg.max_items else len(data.forget)
        cap = cfg.retain_items or max(n_forget, MIN_RETAIN)
        if len(idx) > cap:
            idx = sorted({idx[k] for k in np.linspace(0, len(idx) - 1, cap).round().astype(int)})
    return [(i, items[i]) for i in idx]


def _targets(models: ModelSet, items, fmt: PromptFormat, cfg: AttributionConfig) -> list[tuple[str, str]]:
    pairs = [fmt.pair(it) for it in items]
    if cfg.target == "original_greedy" and pairs:
        lm = models.original
        gen = greedy_generate(lm.model, lm.tokenizer, [p for p, _ in pairs], cfg.max_new_tokens, cfg.batch_size)
        pairs = [(p, fmt.answer(g) if g.strip() else a) for (p, a), g in zip(pairs, gen)]
    return pairs


def attribute_model(lm: LoadedModel, prompts, answers, attributable, cfg: AttributionConfig):
    """{method: (LP or None, contributions, deltas or None, IG steps or None)} for one model over all prompts."""
    pad = pad_id_of(lm.tokenizer)
    out = {}
    if "loo" in cfg.methods:
        lp, c = leave_one_out(lm.model, pad, prompts, answers, attributable, cfg.batch_size, cfg.max_tokens)
        out["loo"] = (lp, c, None, None)
    if "ig" in cfg.methods:
        rule = romberg_integrated_gradients if cfg.ig_rule == "romberg" else adaptive_integrated_gradients
        a, d, k = rule(lm.model, pad, prompts, answers, attributable, cfg.ig_steps, cfg.ig_max_steps, cfg.ig_rtol,
                       cfg.ig_atol, cfg.ig_baseline, cfg.ig_batch_tokens)
        out["ig"] = (None, a, d, k)
    return out


def compute_attribution(models: ModelSet, data: AuditData, config: AttributionConfig = AttributionConfig(),
                        progress: Progress | None = None) -> AttributionResult:
    """LOO and/or IG contributions of every checkpoint on the forget (and retain) prompts, same targets for all."""
    if not isinstance(config, AttributionConfig):
        raise TypeError(f"config must be an AttributionConfig, got {type(config).__name__}")
    checkpoints = models.all()
    tok = models.original.tokenizer
    fmt = data.prompt_format
    layouts, meta = [], []  # per item across splits
    for split in config.splits:
        chosen = split_items(data, split, config)
        items = [it for _, it in chosen]
        for (i, it), (prompt, target) in zip(chosen, _targets(models, items, fmt, config), strict=True):
            layouts.append(prompt_layout(tok, prompt, it.question, config.scope))
            meta.append((split, i, it, prompt, target))
    prompts = [list(lay[0]) for lay in layouts]
    answers = [list(tok(t, add_special_tokens=False)["input_ids"]) for *_, t in meta]
    attributable = [lay[5] for lay in layouts]
    per_model = {}
    for k, (name, lm) in enumerate(checkpoints.items()):
        if progress is not None:
            progress(k / len(checkpoints), f"{name}: attributing {len(prompts)} prompts")
        per_model[name] = attribute_model(lm, prompts, answers, attributable, config)
    lp_method = "loo" if "loo" in config.methods else None
    if lp_method is None:  # IG only: LP from one plain scoring pass
        for name, lm in checkpoints.items():
            sc = score_encoded(lm.model, [Encoded(tuple(x), tuple(y)) for x, y in zip(prompts, answers)],
                               pad_id_of(lm.tokenizer), config.batch_size, max_tokens=config.max_tokens)
            per_model[name]["lp"] = sc.mean_logprob().double().numpy()
    ref = models.original.name
    out = []
    for j, ((ids, tokens, word_index, words, in_scope, att, offsets), (split, i, it, prompt, target)) in enumerate(
            zip(layouts, meta)):
        contributions = {m: {n: np.asarray(per_model[n][m][1][j], dtype=np.float64) for n in checkpoints}
                         for m in config.methods}
        keys = {}
        scope = np.asarray(in_scope)
        for m in config.methods:
            if config.key_tokens == "keywords" and it.keywords:
                keys[m] = keyword_mask(prompt, offsets, it.keywords, att) & scope
            else:  # top-k in-scope tokens by the original model's C
                c0 = np.where(scope, contributions[m][ref], -np.inf)
                top = np.argsort(-c0, kind="stable")[: min(config.top_k, int(scope.sum()))]
                keys[m] = np.zeros(len(ids), dtype=bool)
                keys[m][top] = True
        lp = {n: float(per_model[n]["loo"][0][j]) if lp_method else float(per_model[n]["lp"][j]) for n in checkpoints}
        deltas = {n: float(per_model[n]["ig"][2][j]) for n in checkpoints} if "ig" in config.methods else {}
        steps = {n: int(per_model[n]["ig"][3][j]) for n in checkpoints} if "ig" in config.methods else {}
        out.append(ItemAttribution(split, i, it.line, prompt, target, tuple(ids), tuple(tokens), tuple(word_index),
                                   tuple(words), tuple(bool(x) for x in in_scope), tuple(bool(x) for x in att),
                                   lp, contributions, keys, deltas, steps))
    if progress is not None:
        progress(1.0, "attribution done")
    return AttributionResult(tuple(out), tuple(checkpoints), {n: lm.role for n, lm in checkpoints.items()},
                             tuple(config.methods), {n: lm.hash for n, lm in checkpoints.items()}, data.hash, config)


# Registry entry 'attribution' (keyword-emphasis recovery is the separate 'keyword_recovery').
