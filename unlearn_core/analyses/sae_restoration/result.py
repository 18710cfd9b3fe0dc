"""SAE restoration config and result types."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unlearn_core.analyses.sae_restoration.training import SAEQuality, SAETrainConfig
from unlearn_core.evidence.calibration import ProbeItems
from unlearn_core.store.codec import register_result

VARIANTS = ("inject", "scale")
FEATURE_SETS = ("fact", "concept", "random")
SPLITS = ("forget", "retain")
EVIDENCE_KEY = "sae_restoration"
PLAIN = "plain"
ROW_COLUMNS = ["model", "role", "variant", "features", "alpha", "split", "p", "acc", "delta_p", "delta_acc",
               "restoration_p", "restoration_acc"]


def setting(variant: str, feats: str, alpha: float) -> str:
    """Key of one steering setting in RestorationResult.item_p, e.g. "inject/fact/2"."""
    return f"{variant}/{feats}/{alpha:g}"


def default_layer(n_layers: int) -> int:
    return min(n_layers - 1, round(2 * n_layers / 3))


def default_n_expert(n_forget: int) -> int:
    """m = max(16, 2 * number of forget items): the paper's 16, grown with the forget set."""
    return max(16, 2 * n_forget)


@register_result
@dataclass(frozen=True)
class RestorationConfig:
    """layer: block whose output is steered (None = default_layer; negative counts from the end); sae_path: a
    sae-lens folder to use instead of training; n_fact_features: m per fact (None = 2 x the SAE's L0); n_expert: m of
    the concept set (None = max(16, 2 * number of forget items)); alphas: steering strengths; headline_alpha: the
    alpha of the headline score (None = the max over alphas: the most the steering brings back); seed: the
    random-feature control."""

    layer: int | None = None
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    sae_path: str | None = None
    n_fact_features: int | None = None
    n_expert: int | None = None
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    headline_alpha: float | None = None
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self):
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)):
            raise ValueError(f"layer must be an int or None, got {self.layer!r}")
        if not isinstance(self.sae, SAETrainConfig):
            raise TypeError(f"sae must be a SAETrainConfig, got {type(self.sae).__name__}")
        for name in ("n_fact_features", "n_expert", "batch_size"):
            v = getattr(self, name)
            if v is None and name != "batch_size":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        if not self.alphas or any(not (math.isfinite(a) and a > 0) for a in self.alphas):
            raise ValueError(f"alphas must be positive finite numbers, got {self.alphas!r}")
        if self.headline_alpha is not None and float(self.headline_alpha) not in self.alphas:
            raise ValueError(f"headline_alpha {self.headline_alpha} must be one of alphas {self.alphas}")


@register_result
@dataclass(frozen=True)
class RestorationResult:
    """rows: one per (checkpoint, variant, features, alpha, split) plus alpha=0 plain rows; features: the concept
    set with forget/retain mean activations and top activating prompts; fact_features: per forget item its own
    feature set and how much of the item's activation mass that set holds."""

    layer: int
    n_layers: int
    layer_note: str
    sae_source: str
    sae_quality: SAEQuality
    n_fact_features: int
    expert_features: tuple[int, ...]  # the concept set
    features: tuple[dict, ...]
    fact_features: tuple[dict, ...]
    rows: tuple[dict, ...]
    original_scores: dict[str, float]  # forget_p, forget_acc, retain_p, retain_acc
    rule: str
    model_hashes: dict[str, str]
    data_hash: str
    config: RestorationConfig
    # model -> setting(variant, features, alpha) or "plain" -> per forget item p~ [n_forget] (the original: plain only)
    item_p: dict[str, dict[str, np.ndarray]]
    original: str

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=ROW_COLUMNS)

    def evidence_items(self) -> dict[str, ProbeItems]:
        """Per forget item p~ plain and under fact-feature injection at each model's headline alpha (the alpha the
        headline score uses: configured, or the max over alphas, for every model alike). The original's attacked =
        its plain: injecting its own feature values into it changes nothing (z_o - z_u = 0)."""
        plain, attacked = {}, {}
        for name, by_setting in self.item_p.items():
            plain[name] = by_setting[PLAIN]
            if name == self.original:
                attacked[name] = by_setting[PLAIN]
                continue
            a = self.headline_alpha(name)
            if math.isnan(a):  # nothing to restore at any alpha (it never forgot): its strongest setting
                a = max(self.config.alphas)
            attacked[name] = by_setting[setting("inject", "fact", a)]
        label = ("fact-feature injection, " + ("max over alpha per model" if self.config.headline_alpha is None
                                               else f"alpha={self.config.headline_alpha:g}")
                 + f", block {self.layer} output")
        return {EVIDENCE_KEY: ProbeItems(key=EVIDENCE_KEY, attack=label, metric="answer p~",
                                         forget_plain=plain, forget_attacked=attacked)}

    def features_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.features))

    def fact_features_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.fact_features))

    def summary_frame(self) -> pd.DataFrame:
        names = list(dict.fromkeys(r["model"] for r in self.rows))
        return pd.DataFrame([{"model": n, **self.scores(n)} for n in names])

    def _pick(self, name, variant, feats, alpha, split, col) -> float:
        for r in self.rows:
            if (r["model"], r["variant"], r["features"], r["split"]) == (name, variant, feats, split) \
                    and r["alpha"] == alpha:
                return float(r[col])
        return math.nan

    def curve(self, name: str, variant: str = "inject", feats: str = "fact", split: str = "forget",
              col: str = "restoration_p") -> list[float]:
        return [self._pick(name, variant, feats, a, split, col) for a in self.config.alphas]

    def headline_alpha(self, name: str, variant: str = "inject", feats: str = "fact") -> float:
        """The configured alpha, or the alpha of the largest forget restoration (NaN when nothing is restorable)."""
        if self.config.headline_alpha is not None:
            return float(self.config.headline_alpha)
        curve = self.curve(name, variant, feats)
        live = [(c, a) for c, a in zip(curve, self.config.alphas, strict=True) if not math.isnan(c)]
        return max(live)[1] if live else math.nan

    def scores(self, name: str) -> dict[str, float]:
        """Headline numbers for one checkpoint (report.json / verdict); {} for the original."""
        if not any(r["model"] == name for r in self.rows):
            return {}
        out = {}
        for key, variant, feats in (("sae_restoration_fact", "inject", "fact"),
                                    ("sae_restoration_concept", "inject", "concept"),
                                    ("sae_restoration_random", "inject", "random"),
                                    ("sae_restoration_scale", "scale", "fact")):
            a = self.headline_alpha(name, variant, feats)
            out[key] = self._pick(name, variant, feats, a, "forget", "restoration_p")
            if key == "sae_restoration_fact":
                out.update(sae_restoration_alpha=a,
                           sae_restoration_acc=self._pick(name, variant, feats, a, "forget", "restoration_acc"),
                           sae_retain_delta_p=self._pick(name, variant, feats, a, "retain", "delta_p"))
        out["sae_layer"] = float(self.layer)
        return out
