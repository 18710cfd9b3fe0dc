"""Verdict per checkpoint (methods.md section 6): deleted / partially suppressed / suppressed / not forgotten.

Why two halves: the behavioural forget score only says whether a checkpoint LOOKS forgotten; recovery-type scores
(SAE restoration, 1 - UDS, keyword / quantization / relearning recovery, concept-vector retention) say whether the
knowledge is still inside. The rule is independent of which analyses ran: it takes whatever scores are present in
a flat dict per checkpoint (the `scores()` of any analysis) and names every number it used.

Rule (thresholds in VerdictConfig):
  looks forgotten  <=>  forget_acc <= forgotten_ratio * forget_acc(original)
  r = max over available retention scores (each in [0, 1], higher = more of the knowledge still inside)
  not forgotten if not looks forgotten; else suppressed if r >= suppressed_at; partially suppressed if
  r >= partial_at; deleted if r < partial_at; "unknown" if no behaviour score or no retention score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from unlearn_core.codec import register_result

# score key -> how it reads as "retention" (all clipped to [0, 1])
RETENTION_KEYS: dict[str, str] = {
    "sae_restoration": "SAE restoration (inject the original's fact features, max over alpha)",
    "patching_retention": "1 - UDS (layer-wise patching)",
    "keyword_recovery": "keyword-emphasis recovery",
    "quantization_recovery": "quantization recovery",
    "relearning_recovery": "relearning recovery",
    "concept_vector_retention": "concept-vector retention (unchanged concept vectors)",
    "perturbation_recovery": "activation-perturbation recovery",
}
VERDICTS = ("deleted", "partially suppressed", "suppressed", "not forgotten", "unknown")


@register_result
@dataclass(frozen=True)
class VerdictConfig:
    forgotten_ratio: float = 0.5
    suppressed_at: float = 0.5
    partial_at: float = 0.2
    retention_keys: tuple[str, ...] = tuple(RETENTION_KEYS)

    def __post_init__(self):
        for name in ("forgotten_ratio", "suppressed_at", "partial_at"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if self.partial_at > self.suppressed_at:
            raise ValueError("partial_at must be <= suppressed_at")
        object.__setattr__(self, "retention_keys", tuple(self.retention_keys))

    def rule_text(self) -> str:
        return (f"looks forgotten if forget accuracy <= {self.forgotten_ratio:g} x the original's; "
                f"r = max of the available retention scores ({', '.join(self.retention_keys)}); "
                f"suppressed if r >= {self.suppressed_at:g}, partially suppressed if {self.partial_at:g} <= r < "
                f"{self.suppressed_at:g}, deleted if r < {self.partial_at:g}; not forgotten if it does not look "
                "forgotten.")


@register_result
@dataclass(frozen=True)
class CheckpointVerdict:
    model: str
    verdict: str
    forget_acc: float
    original_forget_acc: float
    looks_forgotten_score: float  # 1 - forget_acc / original forget_acc, clipped to [0, 1]
    retention: float  # r
    retention_from: str  # which score gave r
    evidence: dict[str, float]  # every retention score used
    reason: str


@register_result
@dataclass(frozen=True)
class VerdictResult:
    verdicts: tuple[CheckpointVerdict, ...]
    rule: str
    config: VerdictConfig

    def to_frame(self) -> pd.DataFrame:
        keys = [k for k in self.config.retention_keys if any(k in v.evidence for v in self.verdicts)]
        rows = []
        for v in self.verdicts:
            row = {"model": v.model, "verdict": v.verdict, "forget_acc": v.forget_acc,
                   "original_forget_acc": v.original_forget_acc, "looks_forgotten": v.looks_forgotten_score,
                   "retention": v.retention, "retention_from": v.retention_from}
            row.update({k: v.evidence.get(k, math.nan) for k in keys})
            row["reason"] = v.reason
            rows.append(row)
        return pd.DataFrame(rows)

    def get(self, model: str) -> CheckpointVerdict:
        for v in self.verdicts:
            if v.model == model:
                return v
        raise KeyError(model)


def _num(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return math.nan
    return x


def compute_verdict(scores_by_checkpoint: dict[str, dict[str, float]], rule: VerdictConfig = VerdictConfig(),
                    original: str = "original") -> VerdictResult:
    """Verdict for every checkpoint except `original` (whose forget_acc is the behavioural reference)."""
    f0 = _num(scores_by_checkpoint.get(original, {}).get("forget_acc"))
    out = []
    for name, sc in scores_by_checkpoint.items():
        if name == original:
            continue
        f = _num(sc.get("forget_acc"))
        evidence = {k: min(max(_num(sc[k]), 0.0), 1.0) for k in rule.retention_keys
                    if k in sc and not math.isnan(_num(sc[k]))}
        r_key = max(evidence, key=evidence.get) if evidence else ""
        r = evidence[r_key] if evidence else math.nan
        lf = min(max(1 - f / f0, 0.0), 1.0) if f0 > 0 and not math.isnan(f) else math.nan
        if math.isnan(f) or math.isnan(f0):
            verdict, reason = "unknown", "no behavioural forget accuracy for this checkpoint or the original"
        elif f > rule.forgotten_ratio * f0:
            verdict, reason = "not forgotten", f"forget acc {f:.3f} > {rule.forgotten_ratio:g} x original {f0:.3f}"
        elif not evidence:
            verdict, reason = "unknown", "looks forgotten, but no representation-level score to tell suppression " \
                                         "from deletion"
        else:
            verdict = ("suppressed" if r >= rule.suppressed_at else
                       "partially suppressed" if r >= rule.partial_at else "deleted")
            reason = (f"looks forgotten (forget acc {f:.3f} <= {rule.forgotten_ratio:g} x {f0:.3f}); "
                      f"r = {r:.3f} from {r_key}")
        out.append(CheckpointVerdict(name, verdict, f, f0, lf, r, r_key, evidence, reason))
    return VerdictResult(tuple(out), rule.rule_text(), rule)
