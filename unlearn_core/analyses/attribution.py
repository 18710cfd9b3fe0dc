"""Prompt attribution (methods.md section 2.1-2.2): which prompt tokens carry each model's answer.

unPact's finding is that unlearning mostly breaks the model's *focus on the keywords* of a prompt while the
knowledge stays reachable. We measure focus per prompt token with two methods, for every checkpoint on the SAME
(prompt, target) pairs so the vectors are comparable token by token:

- leave-one-out (LOO): C_i = LP(x, y) - LP(x without token i, y), LP = mean answer-token log-prob. All n+1
  variants of ALL prompts go through `score_encoded` together: one length-sorted batched call per model.
- integrated gradients (captum LayerIntegratedGradients over model.get_input_embeddings()), target = SUM of
  answer-token log-probs, baseline = the pad token's embedding (or zero) at prompt positions only: answer,
  padding and special tokens keep their real embedding, so their attribution is exactly 0 and completeness
  (sum of attributions = F(x) - F(baseline)) is a statement about the prompt alone. Prompts are batched with
  right padding and an attention mask; captum's internal_batch_size bounds prompts x steps per pass.

Key tokens are chosen under the ORIGINAL model (top-k by C, or the item's keywords) and then scored for every
model: KeyShare = sum of positive C over key tokens / sum |C|. On retain prompts a drop of the attribution mass
over all tokens (mass ratio < 1) is collateral damage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from unlearn_core.codec import register_result
from unlearn_core.items import PromptFormat, QAItem
from unlearn_core.scoring import Encoded, greedy_generate, length_batches, pad_id_of, right_pad, score_encoded
from unlearn_core.spec import AnalysisSpec
from unlearn_core.types import AuditData, LoadedModel, ModelSet
from unlearn_core.validation import optional_positive_int, positive_ints

Progress = Callable[[float, str], None]
METHODS = ("loo", "ig")
TARGETS = ("gold", "original_greedy")


@register_result
@dataclass(frozen=True)
class AttributionConfig:
    """target: 'gold' answer or the original model's greedy answer ('original_greedy'); key_tokens: 'top_k' by
    the original model's C, or the item's 'keywords' (whole-word, case-insensitive); scope: 'question' (tokens
    of the question only; the template's 'Question:'/'Answer:' are excluded from keys, KeyShare and Spearman)
    or 'prompt'; ig_baseline: 'pad' or 'zero' embedding; ig_batch_tokens bounds rows x length per IG pass."""

    target: str = "gold"
    methods: tuple[str, ...] = METHODS
    key_tokens: str = "top_k"
    top_k: int = 3
    scope: str = "question"
    splits: tuple[str, ...] = ("forget", "retain")
    max_items: int | None = None  # per split (first N items); None = all
    batch_size: int = 256
    max_tokens: int = 32768
    ig_steps: int = 64
    ig_baseline: str = "pad"
    ig_batch_tokens: int = 16384
    max_new_tokens: int = 24

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if not self.methods or set(self.methods) - set(METHODS):
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {self.methods!r}")
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.key_tokens not in ("top_k", "keywords"):
            raise ValueError(f"key_tokens must be 'top_k' or 'keywords', got {self.key_tokens!r}")
        if self.scope not in ("question", "prompt"):
            raise ValueError(f"scope must be 'question' or 'prompt', got {self.scope!r}")
        if self.ig_baseline not in ("pad", "zero"):
            raise ValueError(f"ig_baseline must be 'pad' or 'zero', got {self.ig_baseline!r}")
        if not self.splits or set(self.splits) - {"forget", "retain"}:
            raise ValueError(f"splits must be a non-empty subset of ('forget', 'retain'), got {self.splits!r}")
        positive_ints(self, "top_k", "batch_size", "max_tokens", "ig_steps", "ig_batch_tokens", "max_new_tokens")
        optional_positive_int(self, "max_items")


# --------------------------------------------------------------------------------------------- token layout


@register_result
@dataclass(frozen=True)
class ItemAttribution:
    """One (prompt, target) pair: its prompt tokens and every model's per-token contributions."""

    split: str
    item: int  # index in data.<split>
    line: int
    prompt: str
    target: str
    token_ids: tuple[int, ...]  # prompt tokens only
    tokens: tuple[str, ...]  # display text of each token (decoded, leading space kept)
    word_index: tuple[int, ...]  # word each token belongs to
    words: tuple[str, ...]
    in_scope: tuple[bool, ...]  # counted in key selection, KeyShare and Spearman
    attributable: tuple[bool, ...]  # False for special tokens (BOS ...): C = 0 by definition
    lp: dict[str, float]  # model -> LP(x, y)
    contributions: dict[str, dict[str, np.ndarray]]  # method -> model -> [n_tokens] float64
    keys: dict[str, np.ndarray]  # method -> [n_tokens] bool, key tokens chosen under the original model
    ig_delta: dict[str, float]  # model -> completeness error: sum(attr) - (F(x) - F(baseline))


def _prompt_layout(tokenizer, prompt: str, question: str, scope: str):
    """Token ids, display tokens, word grouping and scope mask of one prompt (fast-tokenizer offsets/word_ids;
    a byte-level 'Ġ' / sentencepiece '▁' start marker otherwise)."""
    enc = tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=bool(tokenizer.is_fast))
    ids = list(enc["input_ids"])
    special = set(tokenizer.all_special_ids)
    tokens = [tokenizer.decode([t]) for t in ids]
    if tokenizer.is_fast:
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        wids = enc.word_ids()
    else:  # approximate: a new word at each start marker
        raw = tokenizer.convert_ids_to_tokens(ids)
        offsets, wids, w = [], [], -1
        for r in raw:
            w += 1 if (w < 0 or r[:1] in ("Ġ", "▁", "Ċ")) else 0
            wids.append(w)
            offsets.append((0, 0))
    # renumber words 0..W-1; special tokens (word id None) become words of their own
    word_index, words, last = [], [], object()
    for i, w in enumerate(wids):
        if w is None or w != last or not words:
            words.append(tokens[i].strip() if w is None or not tokenizer.is_fast
                         else prompt[offsets[i][0]:offsets[i][1]].strip())
        elif tokenizer.is_fast:
            words[-1] = (words[-1] + prompt[offsets[i][0]:offsets[i][1]]).strip()
        else:
            words[-1] += tokens[i]
        word_index.append(len(words) - 1)
        last = w if w is not None else object()
    lo, hi = 0, len(prompt)
    if scope == "question" and question and question in prompt and tokenizer.is_fast:
        lo = prompt.index(question)
        hi = lo + len(question)
    attributable = [t not in special for t in ids]
    in_scope = [a and (o[1] > lo and o[0] < hi if tokenizer.is_fast else True)
                for a, o in zip(attributable, offsets)]
    return ids, tokens, word_index, words, in_scope, attributable, offsets


def keyword_mask(prompt: str, offsets, keywords, attributable) -> np.ndarray:
    """Tokens overlapping a whole-word, case-insensitive occurrence of any keyword in the prompt."""
    import re

    mask = np.zeros(len(offsets), dtype=bool)
    for kw in keywords:
        for m in re.finditer(r"(?<!\w)" + re.escape(kw.strip()) + r"(?!\w)", prompt, flags=re.IGNORECASE):
            for i, (a, b) in enumerate(offsets):
                mask[i] |= bool(attributable[i] and b > m.start() and a < m.end())
    return mask


# ----------------------------------------------------------------------------------------------- methods


def leave_one_out(model, pad_id: int, prompts: list[list[int]], answers: list[list[int]],
                  attributable: list[list[bool]], batch_size: int = 256, max_tokens: int = 32768):
    """(LP per prompt [N], C per prompt [n_i]) with C_i = LP(x, y) - LP(x without token i, y).

    Every variant of every prompt is one row of ONE length-sorted `score_encoded` call (rows of similar length
    share a pass); non-attributable tokens (special) are not deleted and get C = 0."""
    encs, owner = [], []  # owner: (prompt index, deleted position or -1)
    for p, (x, y, att) in enumerate(zip(prompts, answers, attributable)):
        encs.append(Encoded(tuple(x), tuple(y)))
        owner.append((p, -1))
        for i in range(len(x)):
            if att[i]:
                encs.append(Encoded(tuple(x[:i] + x[i + 1:]), tuple(y)))
                owner.append((p, i))
    lp = score_encoded(model, encs, pad_id, batch_size=batch_size, max_tokens=max_tokens).mean_logprob()
    lp = lp.double().numpy()
    full = np.zeros(len(prompts))
    contrib = [np.zeros(len(x)) for x in prompts]
    for (p, i), v in zip(owner, lp):
        if i < 0:
            full[p] = v
    for (p, i), v in zip(owner, lp):
        if i >= 0:
            contrib[p][i] = full[p] - v
    return full, contrib


def _answer_logprob_sum(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, model) -> torch.Tensor:
    """[rows] sum of answer-token log-probs; labels [rows, T] = next-token id at answer positions, -100 elsewhere.
    `ids` is only used to build the embeddings, which LayerIntegratedGradients replaces by interpolated ones."""
    logits = model(input_ids=ids, attention_mask=mask).logits  # [rows, T, V]
    keep = labels >= 0
    logp = F.log_softmax(logits[keep].float(), dim=-1)  # [n_answer_tokens, V]
    tok = logp.gather(1, labels[keep][:, None])[:, 0]
    out = torch.zeros(ids.shape[0], dtype=torch.float32, device=ids.device)
    return out.index_add(0, keep.nonzero()[:, 0], tok)


def integrated_gradients(model, pad_id: int, prompts: list[list[int]], answers: list[list[int]],
                         attributable: list[list[bool]], n_steps: int = 32, baseline: str = "pad",
                         batch_tokens: int = 16384):
    """(attributions per prompt [n_i], completeness delta per prompt) via captum LayerIntegratedGradients.

    Prompts go together, right-padded, in length-sorted batches; captum's internal_batch_size keeps
    (prompts x steps) rows x length below `batch_tokens`. Baseline 'zero' runs the same layer method with the
    embedding output scaled to zero at prompt positions (a forward hook used only for the baseline pass)."""
    from captum.attr import LayerIntegratedGradients

    emb = model.get_input_embeddings()
    device = emb.weight.device
    out_attr: list = [None] * len(prompts)
    out_delta: list = [None] * len(prompts)
    lengths = [len(x) + len(y) for x, y in zip(prompts, answers)]
    cur: dict[str, torch.Tensor] = {}

    def zero_hook(_module, inp, output):
        # only the passes fed the baseline ids (not the real ids) get zero embeddings at prompt positions
        x = inp[0]
        if x.shape != cur["base"].shape or not torch.equal(x, cur["base"]) or torch.equal(x, cur["ids"]):
            return output
        return output * (~cur["mask"])[..., None].to(output.dtype)

    lig = LayerIntegratedGradients(lambda ids, mask, labels: _answer_logprob_sum(ids, mask, labels, model), emb)
    for batch in length_batches(lengths, max(1, batch_tokens // (n_steps * max(lengths))) or 1):
        seqs = [prompts[i] + answers[i] for i in batch]
        ids, mask = right_pad(seqs, pad_id, device)  # [B, T]
        labels = torch.full_like(ids, -100)
        base = ids.clone()
        prompt_pos = torch.zeros_like(ids, dtype=torch.bool)
        for r, i in enumerate(batch):
            p, a = len(prompts[i]), len(answers[i])
            labels[r, p - 1: p + a - 1] = torch.tensor(answers[i], device=device)
            att = torch.tensor(attributable[i], device=device)
            prompt_pos[r, :p] = att
        base[prompt_pos] = pad_id
        width = ids.shape[1]
        internal = max(2 * len(batch), (batch_tokens // width) // len(batch) * len(batch))
        handle = None
        if baseline == "zero":
            cur.update(base=base, ids=ids, mask=prompt_pos)
            handle = emb.register_forward_hook(zero_hook)
        try:
            attr, delta = lig.attribute(ids, baselines=base, additional_forward_args=(mask, labels),
                                        n_steps=n_steps, internal_batch_size=internal,
                                        return_convergence_delta=True)
        finally:
            if handle is not None:
                handle.remove()
        attr = attr.float().sum(-1).detach().cpu().double()  # [B, T]: sum over embedding dims
        for r, i in enumerate(batch):
            out_attr[i] = attr[r, : len(prompts[i])].numpy() * np.asarray(attributable[i], dtype=float)
            out_delta[i] = float(delta[r])
    return out_attr, out_delta


# ------------------------------------------------------------------------------------------------ result


def key_share(c: np.ndarray, key: np.ndarray, scope: np.ndarray) -> float:
    """sum of positive C over key tokens / sum |C| over the scope (NaN when the scope carries no attribution)."""
    total = np.abs(c[scope]).sum()
    return float(np.clip(c[key & scope], 0, None).sum() / total) if total > 0 else math.nan


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.array_equal(a, b):
        return 1.0
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return 1.0 if np.array_equal(a, b) else math.nan
    return float(spearmanr(a, b).statistic)


@register_result
@dataclass(frozen=True)
class AttributionResult:
    """Per-token contributions of every model on the same (prompt, target) pairs.

    `a - b` (or a.diff(b)) checks that both hold the same items with the same prompt tokens and targets, then
    returns a result whose contributions are a's minus b's: model by model when both hold the same model names,
    or "<a> - <b>" when each holds exactly one model (see `select`). Identical models give exactly zero."""

    items: tuple[ItemAttribution, ...]
    models: tuple[str, ...]  # ModelSet.all() order; models[0] is the reference (original)
    roles: dict[str, str]
    methods: tuple[str, ...]
    model_hashes: dict[str, str]
    data_hash: str
    config: AttributionConfig

    def select(self, *names: str) -> AttributionResult:
        missing = [n for n in names if n not in self.models]
        if missing:
            raise KeyError(f"no model(s) {missing} in this result; have {list(self.models)}")
        items = tuple(replace(
            it, lp={n: it.lp[n] for n in names}, ig_delta={n: it.ig_delta[n] for n in names if n in it.ig_delta},
            contributions={m: {n: c[n] for n in names} for m, c in it.contributions.items()}) for it in self.items)
        return replace(self, items=items, models=tuple(names), roles={n: self.roles[n] for n in names},
                       model_hashes={n: self.model_hashes[n] for n in names})

    def diff(self, other: AttributionResult) -> AttributionResult:
        if not isinstance(other, AttributionResult):
            raise TypeError(f"can only subtract an AttributionResult, got {type(other).__name__}")
        if len(self.items) != len(other.items):
            raise ValueError(f"results hold different items: {len(self.items)} vs {len(other.items)}")
        for a, b in zip(self.items, other.items):
            if (a.split, a.item, a.token_ids, a.target) != (b.split, b.item, b.token_ids, b.target):
                raise ValueError(f"prompt tokens or targets differ at {a.split} item {a.item}: "
                                 f"{list(a.tokens)} -> {a.target!r} vs {list(b.tokens)} -> {b.target!r}")
        methods = tuple(m for m in self.methods if m in other.methods)
        if set(self.models) == set(other.models):
            pairs = [(n, n, n) for n in self.models]
        elif len(self.models) == 1 and len(other.models) == 1:
            pairs = [(f"{self.models[0]} - {other.models[0]}", self.models[0], other.models[0])]
        else:
            raise ValueError(f"cannot pair models {list(self.models)} with {list(other.models)}: use .select()")
        items = tuple(replace(
            a, lp={n: a.lp[x] - b.lp[y] for n, x, y in pairs}, ig_delta={},
            contributions={m: {n: a.contributions[m][x] - b.contributions[m][y] for n, x, y in pairs}
                           for m in methods}) for a, b in zip(self.items, other.items))
        return replace(self, items=items, models=tuple(n for n, _, _ in pairs), methods=methods,
                       roles={n: "difference" for n, _, _ in pairs}, model_hashes={
                           n: f"{self.model_hashes[x]}-{other.model_hashes[y]}" for n, x, y in pairs})

    __sub__ = diff

    def difference(self, model: str, reference: str | None = None) -> AttributionResult:
        """model minus reference (default: the original), as a one-model result named '<model> - <reference>'."""
        return self.select(model).diff(self.select(reference or self.models[0]))

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (model, item, prompt token) with every method's contribution."""
        rows = []
        for it in self.items:
            for n in self.models:
                for t, tok in enumerate(it.tokens):
                    row = {"model": n, "split": it.split, "item": it.item, "line": it.line, "token_index": t,
                           "token": tok, "word_index": it.word_index[t], "word": it.words[it.word_index[t]],
                           "in_scope": it.in_scope[t]}
                    for m in self.methods:
                        row[m] = float(it.contributions[m][n][t])
                        row[f"key_{m}"] = bool(it.keys[m][t])
                    rows.append(row)
        return pd.DataFrame(rows)

    def words_frame(self, method: str = "loo") -> pd.DataFrame:
        """Sub-word contributions summed into words (what the heatmap shows)."""
        df = self.to_frame()
        return (df.groupby(["model", "split", "item", "word_index", "word"], sort=False, as_index=False)
                .agg(contribution=(method, "sum"), key=(f"key_{method}", "any")))

    def items_frame(self) -> pd.DataFrame:
        """Per (model, item, method): LP, KeyShare, Spearman with the original, attribution mass ratio."""
        ref, rows = self.models[0], []
        for it in self.items:
            scope = np.asarray(it.in_scope)
            for m in self.methods:
                c0 = it.contributions[m][ref]
                for n in self.models:
                    c = it.contributions[m][n]
                    mass0 = np.abs(c0[scope]).sum()
                    rows.append({"model": n, "role": self.roles[n], "split": it.split, "item": it.item,
                                 "line": it.line, "method": m, "lp": it.lp[n],
                                 "key_share": key_share(c, it.keys[m], scope),
                                 "spearman": _spearman(c0[scope], c[scope]),
                                 "mass": float(np.abs(c[scope]).sum()),
                                 "mass_ratio": float(np.abs(c[scope]).sum() / mass0) if mass0 > 0 else math.nan,
                                 "ig_delta": it.ig_delta.get(n, math.nan) if m == "ig" else math.nan})
        return pd.DataFrame(rows)

    def summary_frame(self) -> pd.DataFrame:
        """Means per (model, split, method); mass_ratio = mean attribution mass / the original's (a ratio of
        means: per-item ratios explode where the original is saturated, LP ~ 0, and C ~ 0)."""
        df = self.items_frame()
        cols = ["lp", "key_share", "spearman", "mass"]
        out = df.groupby(["model", "role", "split", "method"], sort=False, as_index=False)[cols].mean()
        ref = out[out.model == self.models[0]].set_index(["split", "method"])["mass"]
        base = [ref.get((s, m), math.nan) for s, m in zip(out.split, out.method)]
        out["mass_ratio"] = [x / b if b and b > 0 else math.nan for x, b in zip(out["mass"], base)]
        return out

    def scores(self, model_name: str) -> dict[str, float]:
        """Flat {split}_{stat}_{method} means for one checkpoint, plus the retain-only model's beside them."""
        if model_name not in self.models:
            raise KeyError(f"no model named {model_name!r} in this attribution result")
        s = self.summary_frame()
        out = {}
        refs = [(model_name, "")] + [(n, "_retain_only") for n in self.models if self.roles[n] == "retain_only"
                                     and n != model_name]
        for name, suffix in refs:
            for r in s[s.model == name].itertuples():
                for stat in ("key_share", "spearman", "mass_ratio"):
                    out[f"attr_{r.split}_{stat}_{r.method}{suffix}"] = float(getattr(r, stat))
        return out


# ------------------------------------------------------------------------------------------------ compute


def _split_items(data: AuditData, split: str, max_items: int | None) -> tuple[QAItem, ...]:
    items = getattr(data, split)
    return items[:max_items] if max_items else items


def _targets(models: ModelSet, items, fmt: PromptFormat, cfg: AttributionConfig) -> list[tuple[str, str]]:
    pairs = [fmt.pair(it) for it in items]
    if cfg.target == "original_greedy" and pairs:
        lm = models.original
        gen = greedy_generate(lm.model, lm.tokenizer, [p for p, _ in pairs], cfg.max_new_tokens, cfg.batch_size)
        pairs = [(p, fmt.answer(g) if g.strip() else a) for (p, a), g in zip(pairs, gen)]
    return pairs


def attribute_model(lm: LoadedModel, prompts, answers, attributable, cfg: AttributionConfig):
    """{method: (LP or None, contributions, deltas or None)} for one model over all prompts."""
    pad = pad_id_of(lm.tokenizer)
    out = {}
    if "loo" in cfg.methods:
        lp, c = leave_one_out(lm.model, pad, prompts, answers, attributable, cfg.batch_size, cfg.max_tokens)
        out["loo"] = (lp, c, None)
    if "ig" in cfg.methods:
        a, d = integrated_gradients(lm.model, pad, prompts, answers, attributable, cfg.ig_steps, cfg.ig_baseline,
                                    cfg.ig_batch_tokens)
        out["ig"] = (None, a, d)
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
        items = _split_items(data, split, config.max_items)
        for i, (it, (prompt, target)) in enumerate(zip(items, _targets(models, items, fmt, config))):
            layouts.append(_prompt_layout(tok, prompt, it.question, config.scope))
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
        out.append(ItemAttribution(split, i, it.line, prompt, target, tuple(ids), tuple(tokens), tuple(word_index),
                                   tuple(words), tuple(bool(x) for x in in_scope), tuple(bool(x) for x in att),
                                   lp, contributions, keys, deltas))
    if progress is not None:
        progress(1.0, "attribution done")
    return AttributionResult(tuple(out), tuple(checkpoints), {n: lm.role for n, lm in checkpoints.items()},
                             tuple(config.methods), {n: lm.hash for n, lm in checkpoints.items()}, data.hash, config)


# Registry entry 'attribution' (keyword-emphasis recovery is the separate 'keyword_recovery').
SPEC = AnalysisSpec(
    name="attribution", title="Prompt attribution (keyword focus)", default_config=AttributionConfig,
    compute=compute_attribution,
    tables=lambda r: {"attribution_summary": r.summary_frame(), "attribution_items": r.items_frame(),
                      "attribution_tokens": r.to_frame()},
    scores=lambda r, name: r.scores(name),
)
