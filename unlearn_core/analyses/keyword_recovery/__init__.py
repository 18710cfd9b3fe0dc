"""Keyword-emphasis recovery (methods.md section 2.3): re-ask with the keywords emphasised, weights untouched.

If unlearning only broke the model's focus on the prompt's keywords (unPact), pointing at them again brings the
answer back; a model that never held the fact (retain-only) gains only what any rephrasing gains by chance, so
its value is shown beside every number. Variants (all inside the question slot of the prompt template, so the
answer cue stays the same): repeat the keywords in front, append "Focus on: ...", mark them as *keyword*,
define them once up front ("Key terms: ..."). Per item the best variant counts (an attacker may try several):

    recovery = (F(unl, attacked) - F(unl, plain)) / (F(orig, plain) - F(unl, plain)), clipped to [0, 1]

with F = mean p~ (and, separately, accuracy). The same emphasis on retain prompts gives the side effect: the
change in retain F under the variants, weighted by how often each variant was the best one on the forget set.
Cost per model: ONE length-batched scoring call over plain + all variants of forget, retain and holdout prompts,
and ONE greedy generation over the forget items' plain and best-variant prompts.

Verdict evidence "keyword_recovery": per item, the plain p~ and the best variant's p~ (max over the configured
variants, plain excluded: the same rule for every model, reference included), on the forget split and on the
holdout split (facts the original never learned: what emphasis alone does to an answer that was never known).
Keywords of holdout items follow the same rule as forget items: the item's own `keywords` field, and only where an
item has none (or with keywords="attribution") the top-k question words whose deletion lowers the original model's
answer log-prob most (leave-one-word-out; on holdout items the original does not know the answer, so this picks
the words it leans on, without knowledge of the fact).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from unlearn_core.analyses.common.probes import PLAIN, ItemTable, probe_items, put
from unlearn_core.analyses.common.validation import optional_positive_int, positive_ints
from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope
from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.evidence.recovery import recovery_rate
from unlearn_core.model.scoring import encode, greedy_generate, pad_id_of, score_encoded
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, ModelSet, Progress

VARIANTS = ("repeat", "focus", "mark", "define")


def emphasise(question: str, keywords: tuple[str, ...] | list[str], variant: str) -> str:
    """The question with its keywords emphasised one way (keywords absent from the question are still named)."""
    kws = [k.strip() for k in keywords if k.strip()]
    if variant == "plain" or not kws:
        return question
    if variant == "repeat":
        return " ".join(kws) + ". " + question
    if variant == "focus":
        return f"{question} Focus on: {', '.join(kws)}."
    if variant == "mark":
        out = question
        for k in kws:
            out = re.sub(r"(?<![\w*])" + re.escape(k) + r"(?![\w*])", lambda m: f"*{m.group(0)}*", out,
                         flags=re.IGNORECASE)
        return out
    if variant == "define":
        return f"Key terms: {', '.join(kws)}. {question}"
    raise ValueError(f"unknown emphasis variant {variant!r}; choose from {VARIANTS}")


@register_result
@dataclass(frozen=True)
class KeywordEmphasisConfig:
    """keywords: 'item' (the item's keywords; the top-k leave-one-word-out words under the original model where
    missing) or 'attribution' (always the top-k leave-one-word-out words under the original model)."""

    variants: tuple[str, ...] = VARIANTS
    keywords: str = "item"
    top_k: int = 3
    max_items: int | None = None  # per split; None = all
    batch_size: int = 64
    max_new_tokens: int = 24
    generate: bool = True

    def __post_init__(self):
        object.__setattr__(self, "variants", tuple(self.variants))
        if not self.variants or set(self.variants) - set(VARIANTS):
            raise ValueError(f"variants must be a non-empty subset of {VARIANTS}, got {self.variants!r}")
        if self.keywords not in ("item", "attribution"):
            raise ValueError(f"keywords must be 'item' or 'attribution', got {self.keywords!r}")
        positive_ints(self, "top_k", "batch_size", "max_new_tokens")
        optional_positive_int(self, "max_items")
        if not isinstance(self.generate, bool):
            raise TypeError(f"generate must be a bool, got {self.generate!r}")


SUMMARY_COLUMNS = [
    "model", "role", "forget_p_plain", "forget_p_attacked", "forget_acc_plain", "forget_acc_attacked",
    "recovery_p", "recovery_acc", "retain_p_plain", "retain_p_emphasised", "retain_acc_plain",
    "retain_acc_emphasised", "retain_side_effect_p", "retain_side_effect_acc", "holdout_p_plain",
    "holdout_p_attacked",
]
SPLITS = ("forget", "retain", "holdout")


@register_result
@dataclass(frozen=True)
class KeywordEmphasisResult:
    """scores: one row per (model, split, item, variant incl. 'plain') with p~ and accuracy; answers: the forget
    items' greedy answers plain and under each model's best variant; summary: SUMMARY_COLUMNS + per-variant p~."""

    scores_table: pd.DataFrame
    answers: pd.DataFrame
    summary: pd.DataFrame
    keywords: dict[str, list[list[str]]]  # split -> per-item keywords used
    models: tuple[str, ...]
    model_hashes: dict[str, str]
    data_hash: str
    config: KeywordEmphasisConfig

    def to_frame(self) -> pd.DataFrame:
        return self.summary.copy()

    def item_table(self) -> ItemTable:
        """Per-item p~ of forget and holdout: "plain" and "best" (the best variant's p~ per item)."""
        out: ItemTable = {}
        t = self.scores_table
        for (name, split), g in t[t.split.isin(("forget", "holdout"))].groupby(["model", "split"], sort=False):
            wide = g.pivot(index="item", columns="variant", values="p").sort_index()
            put(out, split, name, PLAIN, wide[PLAIN].to_numpy())
            put(out, split, name, "best", wide[list(self.config.variants)].max(axis=1).to_numpy())
        return out

    def evidence_items(self) -> dict:
        label = f"best of {len(self.config.variants)} keyword-emphasis variants per item"
        return {EVIDENCE.key: probe_items(self.item_table(), EVIDENCE.key, "best", label)}

    def scores(self, model_name: str) -> dict[str, float]:
        """Flat kw_* numbers for report.json, each with the retain-only model's value beside it (suffix)."""
        if model_name not in self.models:
            raise KeyError(f"no model named {model_name!r} in this keyword-emphasis result")
        s = self.summary.set_index("model")
        refs = [(model_name, "")] + [(n, "_retain_only") for n in s.index
                                     if s.loc[n, "role"] == "retain_only" and n != model_name]
        keys = [c for c in s.columns if c != "role"]
        return {f"kw_{k}{suffix}": float(s.loc[n, k]) for n, suffix in refs for k in keys}


WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")  # a question word: letters/digits, inner apostrophe or hyphen


def attributed_keywords(model, tokenizer, items, fmt: PromptFormat, top_k: int, batch_size: int) -> list[list[str]]:
    """Per item the top-k question words whose deletion lowers the answer's mean log-prob the most under `model`
    (leave-one-word-out), in question order. Whole words, so no tokenizer word grouping is needed."""
    prompts, answers, owner = [], [], []  # owner: (item, word index or -1 for the full question)
    words = []
    for i, it in enumerate(items):
        spans = [m.span() for m in WORD.finditer(it.question)]
        words.append([it.question[a:b] for a, b in spans])
        for j, (a, b) in enumerate([(0, 0), *spans]):
            q = re.sub(r"\s{2,}", " ", it.question[:a] + it.question[b:]).strip()
            prompts.append(fmt.prompt(q))
            answers.append(fmt.answer(it.answer))
            owner.append((i, j - 1))
    lp = score_encoded(model, encode(tokenizer, prompts, answers), pad_id_of(tokenizer), batch_size).mean_logprob()
    full = {i: float(v) for (i, j), v in zip(owner, lp) if j < 0}
    drop: dict[int, dict[int, float]] = {i: {} for i in range(len(items))}
    for (i, j), v in zip(owner, lp):
        if j >= 0:
            drop[i][j] = full[i] - float(v)
    return [[words[i][j] for j in sorted(sorted(d, key=lambda j: -d[j])[:top_k])] for i, d in drop.items()]


def _keywords(models: ModelSet, items: tuple[QAItem, ...], data: AuditData, cfg: KeywordEmphasisConfig):
    """Per item: its keywords, or (where it has none, or keywords='attribution') the top-k leave-one-word-out
    words under the original model."""
    need = [i for i, it in enumerate(items) if cfg.keywords == "attribution" or not it.keywords]
    out = [list(it.keywords) for it in items]
    if need:
        o = models.original
        found = attributed_keywords(o.model, o.tokenizer, [items[i] for i in need], data.prompt_format, cfg.top_k,
                                    cfg.batch_size)
        for i, kws in zip(need, found):
            out[i] = kws
    return out


def compute_keyword_emphasis(models: ModelSet, data: AuditData,
                             config: KeywordEmphasisConfig = KeywordEmphasisConfig(),
                             progress: Progress | None = None) -> KeywordEmphasisResult:
    if not isinstance(config, KeywordEmphasisConfig):
        raise TypeError(f"config must be a KeywordEmphasisConfig, got {type(config).__name__}")
    fmt = data.prompt_format
    variants = ("plain", *config.variants)
    splits = {s: tuple(getattr(data, s)[: config.max_items] if config.max_items else getattr(data, s))
              for s in SPLITS}
    splits = {s: [it for it in items if not it.is_passage] for s, items in splits.items()}
    kws = {s: _keywords(models, tuple(items), data, config) if items else [] for s, items in splits.items()}
    rows_meta, prompts, answers = [], [], []  # one row per (split, item, variant)
    for s, items in splits.items():
        for i, it in enumerate(items):
            for v in variants:
                rows_meta.append((s, i, it.line, v))
                prompts.append(fmt.prompt(emphasise(it.question, kws[s][i], v)))
                answers.append(fmt.answer(it.answer))
    checkpoints = models.all()
    score_rows, answer_rows = [], []
    for k, (name, lm) in enumerate(checkpoints.items()):
        if progress is not None:
            progress(k / len(checkpoints), f"{name}: scoring {len(prompts)} emphasised prompts")
        sc = score_encoded(lm.model, encode(lm.tokenizer, prompts, answers), pad_id_of(lm.tokenizer),
                           config.batch_size)
        p, acc = sc.prob().double().numpy(), sc.accuracy().double().numpy()
        for (s, i, line, v), pr, pv, av in zip(rows_meta, prompts, p, acc):
            score_rows.append({"model": name, "role": lm.role, "split": s, "item": i, "line": line, "variant": v,
                               "prompt": pr, "p": float(pv), "acc": float(av)})
        if config.generate and splits["forget"]:
            mine = pd.DataFrame(score_rows[-len(rows_meta):])
            f = mine[mine.split == "forget"]
            best = f[f.variant != "plain"].sort_values(["item", "p"], ascending=[True, False]).groupby("item").head(1)
            plain = f[f.variant == "plain"].sort_values("item")
            best = best.sort_values("item")
            gen = greedy_generate(lm.model, lm.tokenizer, list(plain.prompt) + list(best.prompt),
                                  config.max_new_tokens, config.batch_size)
            n = len(plain)
            for j, (it_i, bv, bp) in enumerate(zip(best["item"], best.variant, best.p)):
                answer_rows.append({"model": name, "role": lm.role, "item": int(it_i),
                                    "gold_answer": splits["forget"][int(it_i)].answer, "plain_answer": gen[j].strip(),
                                    "best_variant": bv, "best_prompt": best.prompt.iloc[j],
                                    "emphasised_answer": gen[n + j].strip(), "p_plain": float(plain.p.iloc[j]),
                                    "p_best": float(bp)})
    table = pd.DataFrame(score_rows)
    summary = _summarise(table, models, config.variants)
    if progress is not None:
        progress(1.0, "keyword emphasis done")
    return KeywordEmphasisResult(table, pd.DataFrame(answer_rows), summary, kws, tuple(checkpoints),
                                 {n: lm.hash for n, lm in checkpoints.items()}, data.hash, config)


def _summarise(table: pd.DataFrame, models: ModelSet, variants: tuple[str, ...]) -> pd.DataFrame:
    orig = models.original.name
    rows = []
    for name, lm in models.all().items():
        t = table[table.model == name]
        row = {c: math.nan for c in SUMMARY_COLUMNS}
        row.update(model=name, role=lm.role)
        f = t[t.split == "forget"]
        if len(f):
            wide_p = f.pivot(index="item", columns="variant", values="p")
            wide_a = f.pivot(index="item", columns="variant", values="acc")
            attacked = wide_p[list(variants)].max(axis=1)
            row.update(forget_p_plain=wide_p["plain"].mean(), forget_p_attacked=attacked.mean(),
                       forget_acc_plain=wide_a["plain"].mean(),
                       forget_acc_attacked=wide_a[list(variants)].max(axis=1).mean())
            for v in variants:
                row[f"forget_p_{v}"] = wide_p[v].mean()
            # how often each variant was the best one: the weights of the retain side effect
            share = wide_p[list(variants)].idxmax(axis=1).value_counts(normalize=True)
        else:
            share = pd.Series({v: 1 / len(variants) for v in variants})
        h = t[t.split == "holdout"]
        if len(h):
            wide_h = h.pivot(index="item", columns="variant", values="p")
            row.update(holdout_p_plain=wide_h["plain"].mean(),
                       holdout_p_attacked=wide_h[list(variants)].max(axis=1).mean())
        r = t[t.split == "retain"]
        if len(r):
            mp = r.groupby("variant")["p"].mean()
            ma = r.groupby("variant")["acc"].mean()
            row.update(retain_p_plain=mp["plain"], retain_acc_plain=ma["plain"],
                       retain_p_emphasised=sum(share.get(v, 0.0) * mp[v] for v in variants),
                       retain_acc_emphasised=sum(share.get(v, 0.0) * ma[v] for v in variants))
            row["retain_side_effect_p"] = row["retain_p_emphasised"] - row["retain_p_plain"]
            row["retain_side_effect_acc"] = row["retain_acc_emphasised"] - row["retain_acc_plain"]
        rows.append(row)
    out = pd.DataFrame(rows)
    ref = out.set_index("model").loc[orig]
    out["recovery_p"] = [recovery_rate(a, p, ref["forget_p_plain"]) if n != orig else math.nan
                         for n, a, p in zip(out.model, out.forget_p_attacked, out.forget_p_plain)]
    out["recovery_acc"] = [recovery_rate(a, p, ref["forget_acc_plain"]) if n != orig else math.nan
                           for n, a, p in zip(out.model, out.forget_acc_attacked, out.forget_acc_plain)]
    return out


EVIDENCE = Evidence("keyword_recovery", "Keyword-emphasis recovery (best variant)", "reference+holdout",
                    axis="recoverable", counted=False, level="forget answer p under the best emphasis variant",
                    why_not="recovers no more from the planted suppressions than from the deletion controls on "
                    "the demo lab (probe-validity table): its number is shown, not counted")

# registry entry 'keyword_recovery' (the attribution numbers are the 'attribution' spec)
def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.keyword_recovery.plots import plot_keyword_recovery

    return {"keyword_recovery": plot_keyword_recovery(r, "p")}


SPEC = AnalysisSpec(
    "keyword_recovery", "Keyword-emphasis recovery", KeywordEmphasisConfig, compute_keyword_emphasis,
    lambda r: {"keyword_recovery_summary": r.summary, "keyword_recovery_items": r.scores_table,
               "keyword_recovery_answers": r.answers},
    lambda r, name: r.scores(name),
    evidence=(EVIDENCE,),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Keyword recovery",
    icon=":material/key:",
    plots=_plots,
    cost_rank=8,
    scope=Scope("whether emphasising the entity's keywords brings answers back",
                "deletion from a low number: a guessable attribute also 'recovers'; compare the "
                "holdout split"),
)
