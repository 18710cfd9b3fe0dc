"""Calibrated evidence (methods.md sections 6-7): where an attack brings the checkpoint, minus where the same attack
brings a control that never knew the answers, in units of the original's lead over that control.

Every probe is an attack with a false-recovery rate of its own (relearning teaches the attribute distribution,
noise and emphasis move probabilities at random, injection transplants the original's answer into any model that
can read it). So the same attack runs on a control:
- the retain-only reference on the SAME forget items (a paired bootstrap), or
- without a reference, for self-contained attacks only, the checkpoint's own HOLDOUT split: facts of the same form
  the original never learned (forget and holdout resampled independently).

Levels, not climbs. With L(m, attack) the mean score an attack reaches on model m (answer p~, accuracy, or the
probe's decoding rate; the probe says which):

    excess = (L(checkpoint, attack) - L(control, attack)) / (L(original) - L(control, plain))

so a checkpoint pushed below a model that never knew the facts, which an attack lifts back to that model's level,
scores 0: gradient ascent on facts a model never knew is a deletion and reads as one. (The first version measured
each model's climb from its own floor and credited such a model with the whole climb.) L(original) is the
original's own score, or the original under the same probe for read-out probes (ceiling "attacked").

What varies is resampled: entities, then the items within them (evidence.units), then the seed of a stochastic
attack (a [seeds, items] array: the seeds are resampled too, and each resample averages the seeds it drew, as the
point estimate averages all of them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unlearn_core.evidence.units import UNIT_ITEM, Units, units_for, weights
from unlearn_core.store.codec import register_result

EPS = 1e-6
CONTROL_REFERENCE = "retain-only reference"
CONTROL_HOLDOUT = "holdout split"
CONTROL_NONE = "none: needs a deletion reference"
CLIP = 1.0  # an excess is a share of the original's lead: kept in [-1, 1]


@register_result
@dataclass(frozen=True)
class ProbeItems:
    """Per-item scores of one recovery probe for every model it ran on: forget split, and holdout where it ran.

    `plain` is the model's own score, `attacked` the score under the probe's headline setting (same units, e.g. the
    answer's mean token probability p~ in [0, 1]); a stochastic attack gives [seeds, items]. Arrays of one split are
    aligned item by item across models; `forget_index` / `holdout_index` say which items of the audit's split they
    are (None: all of them, in order), so entity labels can be matched.
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
    forget_index: tuple[int, ...] | None = None
    holdout_index: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.ceiling not in ("plain", "attacked"):
            raise ValueError(f"ceiling must be 'plain' or 'attacked', got {self.ceiling!r}")

    def original_scores(self, original: str) -> np.ndarray:
        src = self.forget_attacked if self.ceiling == "attacked" else self.forget_plain
        return _seed_mean(np.asarray(src[original], dtype=np.float64))

    def has_holdout(self, model: str) -> bool:
        return model in self.holdout_plain and len(self.holdout_plain[model]) > 0


@register_result
@dataclass(frozen=True)
class CalibratedEvidence:
    key: str
    model: str
    control: str  # CONTROL_REFERENCE | CONTROL_HOLDOUT | CONTROL_NONE
    raw: float  # the checkpoint's attacked level, in units of the original's lead over the control's plain level
    control_value: float  # the control's attacked level in the same units
    excess: float  # raw - control_value: the evidence
    lo: float  # bootstrap interval of the excess (two-sided, ci)
    hi: float
    n_items: int
    n_control: int
    attack: str
    metric: str
    axis: str = "recoverable"  # what the attack needs to hold (analyses.spec.AXES)
    counted_by_default: bool = True  # the analysis declares it counted under the default rule
    why_not: str = ""  # the analysis's reason when it is not
    unit: str = UNIT_ITEM  # what the bootstrap resampled: "entity" (then items within) or "item"
    n_units: int = 0  # entities (or items) resampled on the forget split
    unit_reason: str = ""  # why items and not entities, when items
    n_seeds: int = 1  # seeds of a stochastic attack inside the bootstrap
    # one-sided bootstrap p-values of "excess <= line" for the verdict's lines (suppressed_at, partial_at)
    p_above: tuple[tuple[float, float], ...] = ()
    boot_quantiles: tuple[tuple[float, float], ...] = ()  # (level, lower quantile) for corrected lower bounds
    # the bootstrap resamples of the excess [n_boot] (for the joint test; dropped once the verdict is made), and what
    # they resample: probes with the same `paired_on` resampled the same entities and items in every resample
    boot: np.ndarray | None = field(default=None, repr=False, compare=False)
    paired_on: str = ""

    @property
    def calibrated(self) -> bool:
        return self.control != CONTROL_NONE and math.isfinite(self.lo)

    def lower_bound(self, alpha: float) -> float:
        """The one-sided lower bound at level alpha (a corrected level for several probes), from the stored
        quantiles; NaN when that level was not stored."""
        for a, q in self.boot_quantiles:
            if abs(a - alpha) < 1e-12:
                return q
        return math.nan


def _seed_mean(x: np.ndarray) -> np.ndarray:
    return x.mean(0) if x.ndim == 2 else x


def _as_seeds(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x if x.ndim == 2 else x[None, :]


def _wmean(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Weighted means of x [n] under resample counts w [B, n] (or plain mean for w None)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (w @ x) / w.sum(1)


def _seed_draws(rng: np.random.Generator, n_seeds: int, n_boot: int) -> np.ndarray:
    """[B, S] how often each seed is drawn in a resample of the S seeds (with replacement)."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot).astype(np.float64)


def _wmean_seeds(w: np.ndarray, x: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Weighted means of x [S, n] over resampled items (w [B, n]) of the mean over resampled seeds (draws [B, S])."""
    per_item = draws @ x / x.shape[0]  # [B, n]: each resample's seed mean per item
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.einsum("bn,bn->b", w, per_item) / w.sum(1)


def _levels(att, ctrl_att, ctrl_plain, orig) -> tuple[float, float, float]:
    """(raw, control, excess) levels in units of the original's lead over the control's plain level."""
    den = orig - ctrl_plain
    if not den > EPS:
        return math.nan, math.nan, math.nan
    raw = (att - ctrl_plain) / den
    ctl = (ctrl_att - ctrl_plain) / den
    return float(raw), float(ctl), float(np.clip(raw - ctl, -CLIP, CLIP))


def _interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if len(s) < 0.9 * len(samples) or not len(s):  # too many resamples where the original leads by nothing
        return math.nan, math.nan
    a = (1 - ci) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def _tests(samples: np.ndarray, lines: tuple[float, ...], alphas: tuple[float, ...]):
    s = samples[np.isfinite(samples)]
    if not len(s):
        return (), ()
    p = tuple((t, float((1 + np.sum(s <= t)) / (1 + len(s)))) for t in lines)
    q = tuple((a, float(np.quantile(s, a))) for a in alphas)
    return p, q


def _bootstrapped(att: np.ndarray, orig: np.ndarray, ctl_att: np.ndarray, ctl_plain: np.ndarray, w_forget: np.ndarray,
                  w_control: np.ndarray, rng: np.random.Generator, control: str, n_control: int, base: dict,
                  n_boot: int, ci: float, lines: tuple[float, ...], alphas: tuple[float, ...]) -> CalibratedEvidence:
    """The excess and its bootstrap against one control (the reference on the same items, or the checkpoint's own
    holdout split): att [S, n] and ctl_att [S', m] attacked levels, orig [n] and ctl_plain [m] plain ones; the
    resample weights w_* say which entities and items each resample draws (the same array when paired)."""
    raw, ctl, exc = _levels(att.mean(), ctl_att.mean(), ctl_plain.mean(), orig.mean())
    sa, sc = _seed_draws(rng, att.shape[0], n_boot), _seed_draws(rng, ctl_att.shape[0], n_boot)
    den = _wmean(w_forget, orig) - _wmean(w_control, ctl_plain)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = (_wmean_seeds(w_forget, att, sa) - _wmean_seeds(w_control, ctl_att, sc)) / den
    boot = np.where(den > EPS, np.clip(boot, -CLIP, CLIP), np.nan)
    lo, hi = _interval(boot, ci)
    p, q = _tests(boot, lines, alphas)
    return CalibratedEvidence(control=control, control_value=ctl, raw=raw, excess=exc, lo=lo, hi=hi,
                              n_control=n_control, n_seeds=max(att.shape[0], ctl_att.shape[0]), p_above=p,
                              boot_quantiles=q, boot=boot, **base)


def calibrate(items: ProbeItems, model: str, original: str, reference: str | None, control: str,
              n_boot: int = 2000, seed: int = 0, ci: float = 0.95, forget_units: Units | None = None,
              holdout_units: Units | None = None, lines: tuple[float, ...] = (), alphas: tuple[float, ...] = ()
              ) -> CalibratedEvidence:
    """The evidence of one probe for one checkpoint, against the best control available.

    control: the probe's declared control type (spec.CONTROLS). forget_units / holdout_units: how each split is
    resampled (evidence.units; items when None). lines, alphas: the verdict's thresholds and corrected levels, for
    its tests. Seeded: the same inputs give the same interval."""
    att = _as_seeds(items.forget_attacked[model])  # [S, n]
    orig = items.original_scores(original)  # [n]
    n, s_att = att.shape[1], att.shape[0]
    fu = forget_units if forget_units is not None and forget_units.n_items == n else units_for(None, n)
    rng = np.random.default_rng(seed)
    base = dict(key=items.key, model=model, n_items=n, attack=items.attack, metric=items.metric, unit=fu.unit,
                n_units=fu.n_units, unit_reason=fu.reason)
    if reference is not None and reference in items.forget_attacked and reference != model:
        ctl_att = _as_seeds(items.forget_attacked[reference])
        ctl_plain = _seed_mean(np.asarray(items.forget_plain[reference], np.float64))
        w = weights(fu, n_boot, rng)  # paired: the same entities and items for checkpoint and reference
        return _bootstrapped(att, orig, ctl_att, ctl_plain, w, w, rng, CONTROL_REFERENCE, n, base,
                             n_boot, ci, lines, alphas)
    if control == "reference+holdout" and items.has_holdout(model) and model in items.holdout_attacked:
        ctl_att = _as_seeds(items.holdout_attacked[model])
        ctl_plain = _seed_mean(np.asarray(items.holdout_plain[model], np.float64))
        m = ctl_att.shape[1]
        hu = holdout_units if holdout_units is not None and holdout_units.n_items == m else units_for(None, m)
        wf, wh = weights(fu, n_boot, rng), weights(hu, n_boot, rng)
        return _bootstrapped(att, orig, ctl_att, ctl_plain, wf, wh, rng, CONTROL_HOLDOUT, m, base,
                             n_boot, ci, lines, alphas)
    raw = float(att.mean())
    return CalibratedEvidence(control=CONTROL_NONE, control_value=math.nan, raw=raw, excess=math.nan, lo=math.nan,
                              hi=math.nan, n_control=0, n_seeds=s_att, **base)


def joint(evidence: list[CalibratedEvidence], key: str, lines: tuple[float, ...] = (),
          alphas: tuple[float, ...] = (), ci: float = 0.95) -> CalibratedEvidence | None:
    """The mean excess of several probes, with its interval from their paired resamples: each resample drew the same
    entities and items for every probe (same units, same seed), so the mean's spread counts the probes' correlation.
    Why: a suppression that two attacks each see at 0.2-0.3 is clear from their mean where neither lower bound alone
    clears a corrected line. None unless at least two probes were resampled alike."""
    usable = [e for e in evidence if e.boot is not None and e.paired_on and math.isfinite(e.excess)]
    if len(usable) < 2 or len({(e.paired_on, e.control, len(e.boot)) for e in usable}) != 1:
        return None
    boot = np.mean(np.stack([e.boot for e in usable]), axis=0)
    lo, hi = _interval(boot, ci)
    p, q = _tests(boot, lines, alphas)
    first = usable[0]
    return CalibratedEvidence(
        key=key, model=first.model, control=first.control, raw=float(np.mean([e.raw for e in usable])),
        control_value=float(np.mean([e.control_value for e in usable])),
        excess=float(np.mean([e.excess for e in usable])), lo=lo, hi=hi, n_items=first.n_items,
        n_control=first.n_control, attack="mean of " + " + ".join(e.key for e in usable),
        metric="mean excess of the probes", axis=first.axis, unit=first.unit, n_units=first.n_units,
        unit_reason=first.unit_reason, n_seeds=max(e.n_seeds for e in usable), p_above=p, boot_quantiles=q,
        boot=boot, paired_on=first.paired_on)


def item_gains(items: ProbeItems, model: str) -> np.ndarray:
    """Per-item attacked level minus the model's own plain level on the forget split (unnormalised), for the
    probe-validity AUC over items."""
    att = _seed_mean(np.asarray(items.forget_attacked[model], np.float64))
    plain = _seed_mean(np.asarray(items.forget_plain[model], np.float64))
    return att - plain


def evidence_frame(evidence: list[CalibratedEvidence], labels: dict[str, str] | None = None) -> pd.DataFrame:
    labels = labels or {}
    rows = [{"model": e.model, "evidence": e.key, "label": labels.get(e.key, e.key), "axis": e.axis,
             "control": e.control, "raw_level": e.raw, "control_level": e.control_value, "excess": e.excess,
             "ci_low": e.lo, "ci_high": e.hi, "unit": e.unit, "n_units": e.n_units, "n_items": e.n_items,
             "n_control": e.n_control, "n_seeds": e.n_seeds, "attack": e.attack, "metric": e.metric}
            for e in evidence]
    return pd.DataFrame(rows)
