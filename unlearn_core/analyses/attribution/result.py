"""The attribution config and result types: per-token contributions of every checkpoint on the same pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from unlearn_core.analyses.attribution.methods import key_share, spearman
from unlearn_core.analyses.common.validation import optional_positive_int, positive_ints
from unlearn_core.store.codec import register_result

METHODS = ("loo", "ig")
TARGETS = ("gold", "original_greedy")
IG_RULES = ("romberg", "gausslegendre")


@register_result
@dataclass(frozen=True)
class AttributionConfig:
    """target: 'gold' answer or the original model's greedy answer ('original_greedy'); key_tokens: 'top_k' by
    the original model's C, or the item's 'keywords' (whole-word, case-insensitive); scope: 'question' (tokens
    of the question only; the template's 'Question:'/'Answer:' are excluded from keys, KeyShare and Spearman)
    or 'prompt'; ig_baseline: 'pad' or 'zero' embedding; ig_batch_tokens bounds rows x length per IG pass; ig_rule:
    how the path integral is approximated ('romberg': nested grids, a refinement evaluates only new points);
    retain_items: retain prompts attributed, spread evenly over the retain set; None = as many as the forget prompts
    (at least 32). Retain is the collateral-damage control: a mean over a sample this size says what the whole set
    would, and a retain set 4x the forget set made it 80% of this analysis' time (the costliest of the audit)."""

    target: str = "gold"
    methods: tuple[str, ...] = METHODS
    key_tokens: str = "top_k"
    top_k: int = 3
    scope: str = "question"
    splits: tuple[str, ...] = ("forget", "retain")
    max_items: int | None = None  # per split (first N items); None = all
    retain_items: int | None = None
    batch_size: int = 256
    max_tokens: int = 32768
    ig_steps: int = 32  # first pass; prompts missing the completeness tolerance are redone at 2x, up to ig_max_steps
    ig_max_steps: int = 128
    ig_rtol: float = 0.01  # completeness: |delta| <= max(ig_atol, ig_rtol * |F(x) - F(baseline)|), nats
    ig_atol: float = 0.01
    ig_baseline: str = "pad"
    ig_batch_tokens: int = 16384
    ig_rule: str = "romberg"  # or "gausslegendre": captum's default, each refinement a fresh rule at 2x the steps
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
        if self.ig_rule not in IG_RULES:
            raise ValueError(f"ig_rule must be one of {IG_RULES}, got {self.ig_rule!r}")
        if self.ig_rule == "romberg" and (self.ig_steps < 4 or self.ig_steps % 2):
            raise ValueError(f"ig_steps must be even and >= 4 for the Romberg rule, got {self.ig_steps}")
        if not self.splits or set(self.splits) - {"forget", "retain"}:
            raise ValueError(f"splits must be a non-empty subset of ('forget', 'retain'), got {self.splits!r}")
        positive_ints(self, "top_k", "batch_size", "max_tokens", "ig_steps", "ig_max_steps", "ig_batch_tokens",
                      "max_new_tokens")
        if self.ig_max_steps < self.ig_steps:
            raise ValueError(f"ig_max_steps ({self.ig_max_steps}) must be >= ig_steps ({self.ig_steps}); equal = "
                             "a fixed step count")
        for name in ("ig_rtol", "ig_atol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        optional_positive_int(self, "max_items")
        optional_positive_int(self, "retain_items")


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
    ig_steps: dict[str, int] = field(default_factory=dict)  # model -> IG steps this prompt needed (adaptive)



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
            ig_steps={n: it.ig_steps[n] for n in names if n in it.ig_steps},
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
            a, lp={n: a.lp[x] - b.lp[y] for n, x, y in pairs}, ig_delta={}, ig_steps={},
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
        """Per (model, item, method): LP, KeyShare, Spearman with the original, attribution mass ratio.
        Computed once per result (a copy is returned): the verdict reads every checkpoint's scores, and rebuilding
        this table (a rank correlation per row) for each of them took 8 s of a default-lab audit."""
        return self._items_frame.copy()

    @cached_property
    def _items_frame(self) -> pd.DataFrame:
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
                                 "spearman": spearman(c0[scope], c[scope]),
                                 "mass": float(np.abs(c[scope]).sum()),
                                 "mass_ratio": float(np.abs(c[scope]).sum() / mass0) if mass0 > 0 else math.nan,
                                 "ig_delta": it.ig_delta.get(n, math.nan) if m == "ig" else math.nan,
                                 "ig_steps": it.ig_steps.get(n, 0) if m == "ig" else 0})
        return pd.DataFrame(rows)

    def summary_frame(self) -> pd.DataFrame:
        """Means per (model, split, method); mass_ratio = mean attribution mass / the original's (a ratio of
        means: per-item ratios explode where the original is saturated, LP ~ 0, and C ~ 0)."""
        df = self._items_frame
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
