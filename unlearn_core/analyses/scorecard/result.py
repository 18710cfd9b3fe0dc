"""Scorecard config and result types: which definition made each number, per item, per split."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import pandas as pd

from unlearn_core.analyses.common.text_scores import MIA_METRICS
from unlearn_core.store.codec import register_result

OU = "open-unlearning"
OWN = "own"
DEFINITIONS = (OU, OWN)
MIA_TEXT_MODES = ("answer", "prompt_answer", "as_text")
# what a definition fixes unless the config overrides it: greedy budget for ROUGE-L and the MIA text
DEFINITION_DEFAULTS = {OU: {"max_new_tokens": 200, "mia_text": "answer"},
                        OWN: {"max_new_tokens": 24, "mia_text": "prompt_answer"}}
OU_EPS = 1e-10  # open-unlearning's guard in the truth ratio, its aggregator and PrivLeak
OU_PRIVLEAK_REF = 0.5  # open-unlearning's `ref_value` when no retain-only model's AUC is available
SPLITS = ("forget", "retain")
SPLIT_STATS = ("p", "token_acc", "acc", "rougeL", "truth_ratio", "es")
ITEM_FIELD = {"p": "p", "token_acc": "token_acc", "acc": "acc", "rougeL": "rougeL_recall", "es": "es"}
SUMMARY_COLUMNS = (
    ["model", "role", "definition"]
    + [f"{s}_{m}" for s in SPLITS for m in SPLIT_STATS]
    + ["retain_ppl", "forget_quality", "model_utility", "forget_leak_at_k", "forget_leak_lo", "forget_leak_hi"]
    + [f"mia_auc_{m}" for m in MIA_METRICS]
    + [f"privleak_{m}" for m in MIA_METRICS]
)



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
        return self.max_new_tokens or DEFINITION_DEFAULTS[self.definition]["max_new_tokens"]

    @property
    def mia_mode(self) -> str:
        return self.mia_text or DEFINITION_DEFAULTS[self.definition]["mia_text"]

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
