"""The concept-vector config and result types."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unlearn_core.store.codec import register_result

TOKEN_SOURCES = ("name", "answer", "keywords")
CANDIDATE_COLUMNS = ["concept", "layer", "neuron", "loc_score", "loc_rank", "concept_drop", "unrelated_drop", "effect",
                     "est_logp_drop", "passed_filter", "located", "selected_by", "top_tokens"]
FALLBACKS = ("attribution", "candidates", "none")
ABLATION_COLUMNS = ["checkpoint", "role", "condition", "n_zeroed", "forget_acc", "forget_p", "retain_acc", "retain_p",
                    "median_cos_located"]


@register_result
@dataclass(frozen=True)
class ConceptVectorsConfig:
    """concepts: forget concepts (item.concept) or typed strings; empty = every forget concept.
    top_k is capped at top_k_max_share of the vocabulary (200 of a 512-token vocabulary is no longer "top").
    Causal filter: concept drop > concept_drop_min and unrelated drop < unrelated_drop_max, drops measured in
    effect_metric ("p" = p~, "acc" = exact-answer accuracy) when one column is zeroed or noised (perturbation)."""

    concepts: tuple[str, ...] = ()
    token_sources: tuple[str, ...] = TOKEN_SOURCES
    exclude_shared_tokens: bool = True  # drop tokens that other concepts' words also produce (" born", towns)
    top_k: int = 200
    top_k_max_share: float = 0.05
    apply_norm: bool = True  # multiply columns by the final norm's weight before W_U (the logit lens's scaling)
    n_candidates: int = 24
    perturbation: str = "zero"  # "zero" | "noise"
    noise_std: float = 0.1
    effect_metric: str = "p"
    concept_drop_min: float = 0.2
    unrelated_drop_max: float = 0.1
    max_vectors: int = 8
    min_vectors: int = 3  # fewer than this pass the filter -> the fallback picks n_fallback columns instead
    fallback: str = "attribution"  # "attribution" (all columns, act x grad) | "candidates" (exact effect) | "none"
    n_fallback: int = 16
    max_unrelated: int = 48
    n_random: int = 32  # random baseline columns per layer
    n_show_tokens: int = 15
    batch_size: int = 32
    column_chunk: int = 4096
    seed: int = 0

    def __post_init__(self):
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        for name in ("top_k", "n_candidates", "max_vectors", "n_fallback", "max_unrelated", "n_random", "n_show_tokens",
                     "batch_size", "column_chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(self.min_vectors, bool) or not isinstance(self.min_vectors, int) \
                or not 0 <= self.min_vectors <= self.max_vectors:
            raise ValueError(f"min_vectors must be an int in [0, max_vectors], got {self.min_vectors!r}")
        if not isinstance(self.concepts, tuple) or not all(isinstance(c, str) and c.strip() for c in self.concepts):
            raise ValueError("concepts must be a tuple of non-empty strings")
        if not self.token_sources or set(self.token_sources) - set(TOKEN_SOURCES):
            raise ValueError(f"token_sources must be a non-empty subset of {TOKEN_SOURCES}")
        if self.perturbation not in ("zero", "noise"):
            raise ValueError(f"perturbation must be 'zero' or 'noise', got {self.perturbation!r}")
        if self.effect_metric not in ("p", "acc"):
            raise ValueError(f"effect_metric must be 'p' or 'acc', got {self.effect_metric!r}")
        for name in ("top_k_max_share", "noise_std", "concept_drop_min", "unrelated_drop_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0 < self.top_k_max_share <= 1:
            raise ValueError("top_k_max_share must be in (0, 1]")
        for name in ("exclude_shared_tokens", "apply_norm"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool")

    def effective_k(self, vocab: int) -> int:
        return max(1, min(self.top_k, vocab, math.ceil(self.top_k_max_share * vocab)))


@register_result
@dataclass(frozen=True)
class ConceptVectorsResult:
    concepts: tuple[str, ...]
    concept_tokens: dict[str, tuple[str, ...]]  # concept -> decoded tokens that count as the concept's
    candidates: pd.DataFrame  # CANDIDATE_COLUMNS, located ones flagged
    change: pd.DataFrame  # CHANGE_COLUMNS: located ("concept") and random columns, per non-original checkpoint
    weight_change: pd.DataFrame  # WEIGHT_COLUMNS: every parameter, per non-original checkpoint
    # ABLATION_COLUMNS: every checkpoint as is + two oracles on the original: "located zeroed" (each concept's own
    # columns zeroed, scored on that concept's forget items, pooled; retain averaged) and "all located zeroed"
    ablation: pd.DataFrame
    concept_ablation: pd.DataFrame  # per concept: its own columns zeroed in the original
    projections: pd.DataFrame  # top tokens of each located column, per checkpoint
    loc_scores: np.ndarray  # [n_concepts, n_layers, d_mlp] locate score of every column in the original
    k: int  # effective top-k
    locate_seconds: float  # projection + candidate scoring + causal validation, on the original
    variants: dict[str, str]
    model_hashes: dict[str, str]
    data_hash: str
    config: ConceptVectorsConfig

    def located(self) -> pd.DataFrame:
        return self.candidates[self.candidates["located"]].reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """One row per checkpoint: change of located vs random columns and behaviour, beside the oracle."""
        rows = []
        oracle = self.ablation[self.ablation["condition"] == "located zeroed"]
        for _, a in self.ablation[self.ablation["condition"] == "as is"].iterrows():
            name = a["checkpoint"]
            ch = self.change[self.change["checkpoint"] == name]
            con, rnd = ch[ch["kind"] == "concept"], ch[ch["kind"] == "random"]
            same = a["role"] == "original"

            def med(df, col, same=same, default=1.0):
                return default if same else (float(df[col].median()) if len(df) else math.nan)

            rows.append({
                "checkpoint": name, "role": a["role"], "n_located": int(self.candidates["located"].sum()),
                "median_cos_concept": med(con, "cosine"), "median_cos_random": med(rnd, "cosine"),
                "median_rel_l2_concept": med(con, "rel_l2", default=0.0),
                "median_rel_l2_random": med(rnd, "rel_l2", default=0.0),
                "mean_jaccard_concept": 1.0 if same else (float(con["jaccard"].mean()) if len(con) else math.nan),
                "mean_survival": 1.0 if same else (float(con["survival"].mean()) if len(con) else math.nan),
                "forget_acc": a["forget_acc"], "retain_acc": a["retain_acc"],
                "forget_p": a["forget_p"], "retain_p": a["retain_p"],
                "oracle_forget_acc": float(oracle["forget_acc"].iloc[0]) if len(oracle) else math.nan,
                "oracle_retain_acc": float(oracle["retain_acc"].iloc[0]) if len(oracle) else math.nan,
            })
        return pd.DataFrame(rows)

    def scores(self, name: str) -> dict[str, float]:
        df = self.to_frame()
        if name not in set(df["checkpoint"]):
            raise KeyError(f"no checkpoint named {name!r} in this concept-vector result")
        row = df[df["checkpoint"] == name].iloc[0]
        orig = df[df["role"] == "original"].iloc[0]
        keys = ("median_cos_concept", "median_cos_random", "median_rel_l2_concept", "median_rel_l2_random",
                "mean_jaccard_concept", "mean_survival")
        out = {f"cv_{k}": float(row[k]) for k in keys}
        out["cv_n_located"] = float(row["n_located"])
        out["cv_oracle_forget_acc_drop"] = float(orig["forget_acc"] - row["oracle_forget_acc"])
        out["cv_oracle_retain_acc_drop"] = float(orig["retain_acc"] - row["oracle_retain_acc"])
        out["cv_forget_acc_drop"] = float(orig["forget_acc"] - row["forget_acc"])
        out["cv_retain_acc_drop"] = float(orig["retain_acc"] - row["retain_acc"])
        return out
