"""Calibrated recovery evidence (methods.md section 6): a recovery number only counts as EXCESS over its control.

Every probe is an attack with a false-recovery rate of its own (relearning teaches the attribute distribution, noise
and emphasis move probabilities at random, injection transplants the original's answer into any model that can read
it). So the same attack runs on a control and the evidence is the checkpoint's recovery minus the control's:
- the retain-only reference on the SAME forget items (paired bootstrap over items), or
- without a reference, for self-contained attacks only, the checkpoint's own HOLDOUT split: facts of the same form
  the original never learned (independent bootstrap of both splits). The holdout gain is expressed in the forget
  split's units (divided by the forget denominator), so both terms read as "share of the original's answer mass".

recovery(S) = clip((mean_S attacked - mean_S plain) / (mean_S original_plain - mean_S plain), 0, 1): the project's
one recovery rate (evidence.recovery) on an item subset S, so a bootstrap resample recomputes the ratio of means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unlearn_core.store.codec import register_result

EPS = 1e-6
CONTROL_REFERENCE = "retain-only reference"
CONTROL_HOLDOUT = "holdout split"
CONTROL_NONE = "none: needs a deletion reference"


@register_result
@dataclass(frozen=True)
class ProbeItems:
    """Per-item scores of one recovery probe for every model it ran on: forget split, and holdout where it ran.

    `plain` is the model's own score, `attacked` the score under the probe's headline setting (same units, e.g. the
    answer's mean token probability p~ in [0, 1]). Arrays of one split are aligned item by item across models.
    """

    key: str  # verdict evidence name
    attack: str  # the setting the numbers come from, e.g. "4-bit RTN" or "best alpha per model"
    metric: str  # e.g. "answer p~"
    forget_plain: dict[str, np.ndarray]
    forget_attacked: dict[str, np.ndarray]
    holdout_plain: dict[str, np.ndarray] = field(default_factory=dict)
    holdout_attacked: dict[str, np.ndarray] = field(default_factory=dict)
    # what 100% recovery means: "plain" = the original's own score (attacks that restore behaviour); "attacked" =
    # the original under the same probe (read-out probes: no model can be decoded better than the original is)
    ceiling: str = "plain"

    def __post_init__(self):
        if self.ceiling not in ("plain", "attacked"):
            raise ValueError(f"ceiling must be 'plain' or 'attacked', got {self.ceiling!r}")

    def original_scores(self, original: str) -> np.ndarray:
        src = self.forget_attacked if self.ceiling == "attacked" else self.forget_plain
        return np.asarray(src[original], dtype=np.float64)

    def has_holdout(self, model: str) -> bool:
        return model in self.holdout_plain and len(self.holdout_plain[model]) > 0


@register_result
@dataclass(frozen=True)
class CalibratedEvidence:
    key: str
    model: str
    control: str  # CONTROL_REFERENCE | CONTROL_HOLDOUT | CONTROL_NONE
    raw: float  # the checkpoint's recovery on the forget split (uncalibrated)
    control_value: float  # the same attack's recovery on the control (reference, or holdout gain)
    excess: float  # raw - control_value: the evidence
    lo: float  # bootstrap interval of the excess
    hi: float
    n_items: int
    n_control: int
    attack: str
    metric: str
    axis: str = "recoverable"  # what the attack needs to hold (analyses.spec.AXES)
    counted_by_default: bool = True  # the analysis declares it counted under the default rule
    why_not: str = ""  # the analysis's reason when it is not

    @property
    def calibrated(self) -> bool:
        return self.control != CONTROL_NONE and math.isfinite(self.lo)


def _rec(att: np.ndarray, plain: np.ndarray, orig: np.ndarray) -> np.ndarray:
    """recovery over the last axis (items): works on [n] and on bootstrap stacks [B, n]."""
    denom = orig.mean(-1) - plain.mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (att.mean(-1) - plain.mean(-1)) / denom
    return np.where(denom > EPS, np.clip(r, 0.0, 1.0), np.nan)


def _holdout_term(att_h: np.ndarray, plain_h: np.ndarray, plain_f: np.ndarray, orig_f: np.ndarray) -> np.ndarray:
    """Holdout gain in forget units, clipped to [0, 1] (an attack that hurts holdout must not inflate the excess)."""
    denom = orig_f.mean(-1) - plain_f.mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (att_h.mean(-1) - plain_h.mean(-1)) / denom
    return np.where(denom > EPS, np.clip(g, 0.0, 1.0), np.nan)


def _interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if len(s) < 0.9 * len(samples) or not len(s):  # too many resamples where the checkpoint did not forget
        return math.nan, math.nan
    a = (1 - ci) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def calibrate(items: ProbeItems, model: str, original: str, reference: str | None, control: str,
              n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> CalibratedEvidence:
    """The evidence of one probe for one checkpoint, against the best control available.

    control: the probe's declared control type (spec.CONTROLS). Seeded: the same inputs give the same interval.
    """
    f = {k: np.asarray(v, dtype=np.float64) for k, v in (("att", items.forget_attacked[model]),
                                                          ("plain", items.forget_plain[model]),
                                                          ("orig", items.original_scores(original)))}
    n = len(f["att"])
    raw = float(_rec(f["att"], f["plain"], f["orig"]))
    rng = np.random.default_rng(seed)
    base = dict(key=items.key, model=model, raw=raw, n_items=n, attack=items.attack, metric=items.metric)
    if reference is not None and reference in items.forget_attacked and reference != model:
        ra, rp = (np.asarray(items.forget_attacked[reference], np.float64),
                  np.asarray(items.forget_plain[reference], np.float64))
        ctrl = float(_rec(ra, rp, f["orig"]))
        idx = rng.integers(0, n, size=(n_boot, n))  # paired: the same items for checkpoint and reference
        boot = _rec(f["att"][idx], f["plain"][idx], f["orig"][idx]) - _rec(ra[idx], rp[idx], f["orig"][idx])
        lo, hi = _interval(boot, ci)
        return CalibratedEvidence(control=CONTROL_REFERENCE, control_value=ctrl, excess=raw - ctrl, lo=lo, hi=hi,
                                  n_control=n, **base)
    if control == "reference+holdout" and items.has_holdout(model):
        ha = np.asarray(items.holdout_attacked[model], np.float64)
        hp = np.asarray(items.holdout_plain[model], np.float64)
        m = len(ha)
        ctrl = float(_holdout_term(ha, hp, f["plain"], f["orig"]))
        i_f = rng.integers(0, n, size=(n_boot, n))
        i_h = rng.integers(0, m, size=(n_boot, m))
        boot = (_rec(f["att"][i_f], f["plain"][i_f], f["orig"][i_f])
                - _holdout_term(ha[i_h], hp[i_h], f["plain"][i_f], f["orig"][i_f]))
        lo, hi = _interval(boot, ci)
        return CalibratedEvidence(control=CONTROL_HOLDOUT, control_value=ctrl, excess=raw - ctrl, lo=lo, hi=hi,
                                  n_control=m, **base)
    return CalibratedEvidence(control=CONTROL_NONE, control_value=math.nan, excess=math.nan, lo=math.nan,
                              hi=math.nan, n_control=0, **base)


def item_gains(items: ProbeItems, model: str) -> np.ndarray:
    """Per-item gain attacked - plain on the forget split (unnormalised: per-item denominators are unstable), for
    the probe-validity AUC over items."""
    att = np.asarray(items.forget_attacked[model], np.float64)
    plain = np.asarray(items.forget_plain[model], np.float64)
    return att - plain


def evidence_frame(evidence: list[CalibratedEvidence], labels: dict[str, str] | None = None) -> pd.DataFrame:
    labels = labels or {}
    rows = [{"model": e.model, "evidence": e.key, "label": labels.get(e.key, e.key), "control": e.control,
             "raw_recovery": e.raw, "control_recovery": e.control_value, "excess": e.excess, "ci_low": e.lo,
             "ci_high": e.hi, "n_items": e.n_items, "n_control": e.n_control, "attack": e.attack,
             "metric": e.metric} for e in evidence]
    return pd.DataFrame(rows)
