"""Verdict per checkpoint (methods.md sections 6-7): deleted / partially suppressed / suppressed / hidden by a small
edit / inconclusive.

Why calibrated: a raw recovery number measures the attack as much as the checkpoint. Every probe has a false-recovery
rate of its own, so the evidence is where the attack brings the checkpoint minus where it brings a control that never
knew the answers (the retain-only reference on the same items, or, for self-contained attacks without a reference,
the holdout split), with a bootstrap interval over entities (evidence.calibration, evidence.units). The verdict reads
intervals, not points; probes with no usable control are shown and not counted.

Two axes. SUPPRESSED means recoverable by someone who holds the checkpoint but not the original, so only attacks
that never see the original's weights, states or the forget answers (axis "recoverable") decide it. Attacks that read
the original (axis "edit_of_original": update revert, patching, SAE injection, guided extraction) show that the
checkpoint is a small edit of the original; every real unlearned model is derived from the original while the
reference is trained from the base, so they partly measure lineage, and alone they give their own call, "hidden by a
small edit" (undoing it needs the original), never "suppressed" and never "deleted".

Rule (thresholds in VerdictConfig; e = excess over the control, [lo, hi] its interval; LB_k = the one-sided lower
bound at level (1 - ci) / 2 / k, Bonferroni over the k counted probes of one axis, which for "any probe clears the
line" is also Holm's first step):
  looks forgotten  <=>  forget_acc <= forgotten_ratio * forget_acc(original)      (else "not forgotten")
  over the COUNTED, calibrated evidence:
    suppressed            if some recoverable probe has LB_k >= suppressed_at
    partially suppressed  else if some recoverable probe has LB_k >= partial_at
    hidden by a small edit else if some edit-of-original probe has LB_k >= suppressed_at
    deleted               else if every counted probe has hi < suppressed_at
    inconclusive          otherwise (an interval straddles the line)
  "unknown" if there is no behavioural score or no counted, calibrated evidence.
  "nothing to audit" if the original answers none of the forget questions: a checkpoint cannot "look forgotten"
  for facts that were never known (a forget set the original does not know, or a wrong prompt template; the data
  check, unlearn_core.analyses.data_check, says which).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd

from unlearn_core.evidence.calibration import CONTROL_NONE, CalibratedEvidence, calibrate, joint
from unlearn_core.evidence.units import Units
from unlearn_core.store.codec import register_result

OUT_OF_REACH = 10  # projections above this multiple of the units audited are reported as out of reach
HIDDEN = "hidden by a small edit"
VERDICTS = ("deleted", "partially suppressed", "suppressed", HIDDEN, "inconclusive", "not forgotten", "unknown",
            "nothing to audit")
AXES = ("recoverable", "edit_of_original")
MAX_PROBES = 8  # corrected lower bounds are kept for up to this many counted probes per axis
JOINT = "joint_recoverable"  # the evidence key of the recoverable probes' mean
NOTHING_TO_AUDIT = ("the original answers none of the forget questions (forget accuracy {f0:.3f}): nothing was "
                    "known, so nothing can look forgotten or be audited; check the forget set and the prompt "
                    "template (data check)")


@register_result
@dataclass(frozen=True)
class VerdictConfig:
    forgotten_ratio: float = 0.5  # looks forgotten: forget accuracy at most this share of the original's
    suppressed_at: float = 0.15  # the corrected lower bound of the excess must clear this
    partial_at: float = 0.1  # partially suppressed: the corrected lower bound clears this but not suppressed_at
    # evidence keys that count; None: the evidence each analysis declares counted (its SPEC's Evidence.counted,
    # resolved by run.audit before the verdict, so the rule text names them)
    counted: tuple[str, ...] | None = None
    n_boot: int = 2000  # bootstrap resamples
    ci: float = 0.95  # two-sided intervals; one-sided tests at (1 - ci) / 2
    seed: int = 0
    # the looks-forgotten half also reads leak@k when the scorecard sampled (leak_k > 0): greedy decoding hides an
    # answer that still has real probability mass, which k samples at temperature T find
    read_leak: bool = True
    correct: bool = True  # correct each axis's lower bounds for its number of counted probes (Bonferroni / Holm)
    joint: bool = True  # also test the mean of the counted recoverable probes (paired resamples), one more test

    def __post_init__(self):
        for name in ("forgotten_ratio", "suppressed_at", "partial_at"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if self.partial_at > self.suppressed_at:
            raise ValueError("partial_at must be <= suppressed_at")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or not 100 <= self.n_boot <= 100_000:
            raise ValueError(f"n_boot must be an int in [100, 100000], got {self.n_boot!r}")
        if not 0.5 <= self.ci < 1:
            raise ValueError(f"ci must be in [0.5, 1), got {self.ci!r}")
        if self.counted is not None:
            object.__setattr__(self, "counted", tuple(self.counted))

    @property
    def alpha(self) -> float:
        """The one-sided level of every lower bound before correction."""
        return (1 - self.ci) / 2

    def level(self, k: int) -> float:
        """The one-sided level of a lower bound among k counted probes of one axis."""
        return self.alpha / max(1, k) if self.correct else self.alpha

    def levels(self) -> tuple[float, ...]:
        return tuple(self.level(k) for k in range(1, MAX_PROBES + 1))

    def rule_text(self) -> str:
        counted = ("those their analyses declare counted" if self.counted is None else ", ".join(self.counted))
        pct = f"{self.ci:.0%}"
        one = f"{self.alpha:g}"
        corr = (f"at level {one}/k, Bonferroni over the k counted probes of its axis (for 'some probe clears the "
                "line' also Holm's first step)" if self.correct else f"at level {one}, uncorrected")
        if self.joint:
            corr += (", the recoverable axis counting one more test: the mean of its probes over the same resampled "
                     "entities (joint_recoverable)")
        leak = (f" and, where leak@k was sampled, leak@k - the reference's <= {self.forgotten_ratio:g} x (the "
                "original's - the reference's)" if self.read_leak else "")
        return (f"looks forgotten if forget accuracy <= {self.forgotten_ratio:g} x the original's{leak}. Evidence "
                f"of each counted probe ({counted}) = (its level on the checkpoint under attack - the control's "
                "level under the same attack) / (the original's level - the control's plain level), the control "
                "being the retain-only reference on the same items, else the holdout split for self-contained "
                f"attacks; {pct} bootstrap intervals [lo, hi] resampling entities, then items within them, then "
                f"seeds ({self.n_boot} resamples, seed {self.seed}); lower bounds LB one-sided {corr}. Suppressed "
                f"if a recoverable probe (never sees the original or the forget answers) has LB >= "
                f"{self.suppressed_at:g}; partially suppressed if one has LB >= {self.partial_at:g}; else hidden by "
                f"a small edit if a probe that reads the original has LB >= {self.suppressed_at:g}; deleted if "
                f"every counted hi < {self.suppressed_at:g}; inconclusive otherwise. Probes without a control are "
                "shown, labelled 'needs a deletion reference', and not counted.")


@register_result
@dataclass(frozen=True)
class CheckpointVerdict:
    model: str
    verdict: str
    forget_acc: float
    original_forget_acc: float
    looks_forgotten_score: float  # 1 - forget_acc / original forget_acc, clipped to [0, 1]
    retention: float  # excess of the deciding evidence, NaN if none
    retention_lo: float  # its lower bound as the rule reads it (corrected for its axis's probes)
    retention_hi: float
    retention_from: str  # which evidence decided
    control: str  # what that evidence was calibrated against
    evidence: tuple[CalibratedEvidence, ...]  # every piece, counted or not
    counted: tuple[str, ...]  # keys of the pieces that counted
    reason: str
    not_counted: dict[str, str] = field(default_factory=dict)  # key -> why it did not count
    # "partially suppressed" / "inconclusive": units (entities or items) for a definite call at the same excess
    items_for_call: float = math.nan
    call_if_more_items: str = ""  # the call those units would give: "suppressed" | "deleted" | ""
    deciding_axis: str = ""  # "recoverable" | "edit_of_original" | "" (no deciding probe)
    unit: str = "item"  # what the deciding evidence resampled
    retention_level: float = math.nan  # the one-sided level of retention_lo (after correction)

    def projection(self) -> str:
        """The projection in words, the same in the reason, the CLI and the page; "" without one."""
        if not self.call_if_more_items:
            return ""
        return projection_phrase(self.items_for_call, self.call_if_more_items, self.items_audited(), self.unit)

    def items_audited(self) -> int:
        """Units (entities, or items) behind the counted evidence: what a projection scales from."""
        return max((e.n_units or e.n_items for e in self.evidence if e.key in self.counted), default=0)


@register_result
@dataclass(frozen=True)
class VerdictResult:
    verdicts: tuple[CheckpointVerdict, ...]
    rule: str
    config: VerdictConfig
    reference: str | None  # the retain-only reference's name, or None (holdout controls)

    def to_frame(self) -> pd.DataFrame:
        """verdicts.csv: one row per checkpoint with the deciding number, its interval, axis and control."""
        rows = []
        for v in self.verdicts:
            row = {"model": v.model, "verdict": v.verdict, "deciding_axis": v.deciding_axis,
                   "forget_acc": v.forget_acc, "original_forget_acc": v.original_forget_acc,
                   "looks_forgotten": v.looks_forgotten_score, "retention_excess": v.retention,
                   "ci_low": v.retention_lo, "ci_high": v.retention_hi, "ci_low_level": v.retention_level,
                   "retention_from": v.retention_from, "control": v.control, "unit": v.unit,
                   "units_for_definite_call": v.items_for_call, "call_with_more_units": v.call_if_more_items}
            for e in v.evidence:
                row[f"{e.key}_excess"] = e.excess
                row[f"{e.key}_ci_low"] = e.lo
                row[f"{e.key}_ci_high"] = e.hi
            row["reason"] = v.reason
            rows.append(row)
        return pd.DataFrame(rows)

    def evidence_frame(self) -> pd.DataFrame:
        """evidence.csv: every probe x checkpoint with its axis, levels, excess, interval, unit, counted."""
        rows = []
        for v in self.verdicts:
            k = _axis_counts(v)
            for e in v.evidence:
                counted = e.key in v.counted
                rows.append({"model": v.model, "evidence": e.key, "axis": e.axis, "control": e.control,
                             "raw_level": e.raw, "control_level": e.control_value, "excess": e.excess,
                             "ci_low": e.lo, "ci_high": e.hi,
                             "lb_corrected": e.lower_bound(self.config.level(k.get(e.axis, 1))) if counted
                             else math.nan,
                             "unit": e.unit, "n_units": e.n_units, "n_items": e.n_items, "n_control": e.n_control,
                             "n_seeds": e.n_seeds, "unit_reason": e.unit_reason, "counted": counted,
                             "why_not_counted": v.not_counted.get(e.key, ""), "attack": e.attack, "metric": e.metric})
        return pd.DataFrame(rows)

    def get(self, model: str) -> CheckpointVerdict:
        for v in self.verdicts:
            if v.model == model:
                return v
        raise KeyError(model)


def _axis_counts(v: CheckpointVerdict) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in v.evidence:
        if e.key in v.counted:
            out[e.axis] = out.get(e.axis, 0) + 1
    return out


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def calibrate_all(items_by_key: dict[str, tuple[object, object]], checkpoints: list[str], original: str,
                  reference: str | None, rule: VerdictConfig = VerdictConfig(),
                  units: dict[str, Units] | None = None) -> dict[str, list[CalibratedEvidence]]:
    """checkpoint -> its calibrated evidence, one per probe that ran on it. items_by_key: key -> (Evidence, items);
    units: split -> how its items are resampled (entities; evidence.units), matched to each probe's items."""
    out: dict[str, list[CalibratedEvidence]] = {c: [] for c in checkpoints}
    for ev, items in items_by_key.values():
        if original not in items.forget_plain:
            continue
        fu = _units_of(units, "forget", items.forget_index)
        hu = _units_of(units, "holdout", items.holdout_index)
        for c in checkpoints:
            if c in items.forget_plain and c != original:
                e = calibrate(items, c, original, reference, ev.control, rule.n_boot, rule.seed, rule.ci, fu, hu,
                              lines=(rule.suppressed_at, rule.partial_at), alphas=rule.levels())
                paired = "all" if items.forget_index is None else ",".join(map(str, items.forget_index))
                paired += "|" + ("all" if items.holdout_index is None else ",".join(map(str, items.holdout_index)))
                out[c].append(replace(e, axis=ev.axis, counted_by_default=ev.counted, why_not=ev.why_not,
                                      paired_on=paired))
    return out


def _units_of(units: dict[str, Units] | None, split: str, index) -> Units | None:
    if not units or split not in units:
        return None
    return units[split] if index is None else units[split].subset(index)


def _lb(e: CalibratedEvidence, rule: VerdictConfig, k: int) -> float:
    lb = e.lower_bound(rule.level(k))
    return e.lo if math.isnan(lb) and not rule.correct else lb


def _decide(evidence: list[CalibratedEvidence], rule: VerdictConfig):
    """(verdict, deciding evidence, its corrected lower bound, its level, counted keys, why not counted, axis)."""
    counted, why = [], {}
    for e in evidence:
        if e.control == CONTROL_NONE:
            why[e.key] = "needs a deletion reference (it copies the original's states; no self-contained control)"
        elif not (e.counted_by_default if rule.counted is None else e.key in rule.counted):
            why[e.key] = ((e.why_not if rule.counted is None or not e.counted_by_default else "")
                          or "not among the counted probes of this rule")
        elif not e.calibrated:
            why[e.key] = "the original does not lead the control on this probe's items (nothing to measure)"
        else:
            counted.append(e)
    if rule.joint:  # the counted recoverable probes' mean, tested beside each of them (one more in the family)
        j = joint([e for e in counted if e.axis == "recoverable"], JOINT, (rule.suppressed_at, rule.partial_at),
                  rule.levels(), rule.ci)
        if j is not None:
            counted.append(j)
            evidence.append(j)
    keys = [e.key for e in counted]
    if not counted:
        return "unknown", None, math.nan, math.nan, [], why, ""
    by_axis = {a: [e for e in counted if e.axis == a] for a in AXES}

    def best(axis):
        es = by_axis[axis]
        if not es:
            return None, -math.inf, math.nan
        k = len(es)
        e = max(es, key=lambda x: (_num(_lb(x, rule, k)), x.excess))
        return e, _num(_lb(e, rule, k)), rule.level(k)

    rec, rec_lb, rec_level = best("recoverable")
    edit, edit_lb, edit_level = best("edit_of_original")
    if rec is not None and rec_lb >= rule.suppressed_at:
        return "suppressed", rec, rec_lb, rec_level, keys, why, "recoverable"
    if rec is not None and rec_lb >= rule.partial_at:
        return "partially suppressed", rec, rec_lb, rec_level, keys, why, "recoverable"
    if edit is not None and edit_lb >= rule.suppressed_at:
        return HIDDEN, edit, edit_lb, edit_level, keys, why, "edit_of_original"
    top = max(counted, key=lambda e: e.hi)
    k = len(by_axis[top.axis])
    verdict = "deleted" if top.hi < rule.suppressed_at else "inconclusive"
    return verdict, top, _num(_lb(top, rule, k)), rule.level(k), keys, why, top.axis


def items_for_call(counted: list[CalibratedEvidence], rule: VerdictConfig) -> tuple[float, str]:
    """(units, call): how many units (entities where the evidence resamples entities, else items) would turn
    "partially suppressed" / "inconclusive" into a definite call if every excess stayed as measured and the interval
    narrowed as 1/sqrt(n) (the bootstrap spread per unit unchanged). Suppressed needs one recoverable probe with a
    corrected lower bound >= suppressed_at: n ((e - lb) / (e - line))^2 for the cheapest; deleted needs every hi <
    line: the largest n ((hi - e) / (line - e))^2. A projection for planning an audit, not a promise."""
    line = rule.suppressed_at
    k = {a: sum(1 for e in counted if e.axis == a) for a in AXES}
    usable = [e for e in counted if math.isfinite(e.lo) and math.isfinite(e.hi) and (e.n_units or e.n_items) > 0]
    if not usable:
        return math.nan, ""
    n_of = {id(e): (e.n_units or e.n_items) for e in usable}
    up = []
    for e in usable:
        lb = _num(_lb(e, rule, k[e.axis]))
        if e.axis == "recoverable" and e.excess > line and math.isfinite(lb):
            up.append(n_of[id(e)] * ((e.excess - lb) / (e.excess - line)) ** 2)
    if up:
        return float(math.ceil(min(up))), "suppressed"
    if all(e.excess < line for e in usable):
        return float(math.ceil(max(n_of[id(e)] * ((e.hi - e.excess) / (line - e.excess)) ** 2 for e in usable))), \
            "deleted"
    return math.nan, ""


def projection_phrase(n_more: float, call: str, n: int, unit: str = "item") -> str:
    """Beyond OUT_OF_REACH times the units audited the excess sits so near the line that collecting more is not a
    realistic way to a definite call: said so, instead of a number that reads like a plan."""
    what = "entities" if unit == "entity" else "forget items"
    if n > 0 and n_more > OUT_OF_REACH * n:
        return (f"more {what} would not settle it: the excess sits near the line, so about {n_more:.0f}, over "
                f"{OUT_OF_REACH}x these {n}, would make it \"{call}\"")
    return f"about {n_more:.0f} {what} would make it \"{call}\""


def _still_leaks(behaviour: dict[str, dict[str, float]], name: str, original: str, reference: str | None,
                 rule: VerdictConfig) -> str | None:
    """The reason the sampled answers say "not forgotten" although the greedy ones are gone, or None (no leak@k
    sampled, or the checkpoint leaks no more than the rule allows). In units between the reference (a model that
    never learned the facts still guesses some, e.g. a common city) and the original, like forget accuracy."""
    if not rule.read_leak:
        return None
    leak = _num(behaviour[name].get("forget_leak_at_k"))
    l0 = _num(behaviour.get(original, {}).get("forget_leak_at_k"))
    lr = _num(behaviour.get(reference, {}).get("forget_leak_at_k")) if reference else 0.0
    lr = 0.0 if math.isnan(lr) else lr
    if math.isnan(leak) or math.isnan(l0) or l0 <= lr:
        return None
    if leak - lr <= rule.forgotten_ratio * (l0 - lr):
        return None
    return (f"greedy answers gone, but sampling still leaks them: leak@k {leak:.3f} - reference {lr:.3f} > "
            f"{rule.forgotten_ratio:g} x (original {l0:.3f} - reference {lr:.3f})")


def compute_verdict(behaviour: dict[str, dict[str, float]], evidence: dict[str, list[CalibratedEvidence]],
                    rule: VerdictConfig = VerdictConfig(), original: str = "original",
                    reference: str | None = None) -> VerdictResult:
    """Verdict for every checkpoint of `evidence` except the original and the reference.

    behaviour: checkpoint -> flat scores holding at least "forget_acc" (the scorecard's); evidence: calibrate_all's.
    """
    f0 = _num(behaviour.get(original, {}).get("forget_acc"))
    out = []
    for name in behaviour:
        if name in (original, reference):
            continue
        ev = evidence.get(name, [])
        f = _num(behaviour[name].get("forget_acc"))
        lf = min(max(1 - f / f0, 0.0), 1.0) if f0 > 0 and not math.isnan(f) else math.nan
        verdict, best, lb, level, counted, why, axis = _decide(ev, rule)
        if not math.isnan(f0) and f0 <= 0:  # first: 0 <= 0.5 x 0 would call never-known facts "forgotten"
            verdict, best, counted, axis, reason = "nothing to audit", None, [], "", NOTHING_TO_AUDIT.format(f0=f0)
        elif math.isnan(f) or math.isnan(f0):
            verdict, reason = "unknown", "no behavioural forget accuracy for this checkpoint or the original"
            best, axis = None, ""
        elif f > rule.forgotten_ratio * f0:
            verdict, reason = "not forgotten", f"forget acc {f:.3f} > {rule.forgotten_ratio:g} x original {f0:.3f}"
            best, axis = None, ""
        elif (leaks := _still_leaks(behaviour, name, original, reference, rule)) is not None:
            verdict, best, counted, axis, reason = "not forgotten", None, [], "", leaks
        elif best is None:
            verdict = "unknown"
            reason = ("looks forgotten, but no counted evidence with a control"
                      + (f" ({'; '.join(f'{k}: {w}' for k, w in why.items())})" if why else ": run a probe"))
        else:
            unit = (f"{best.n_units} entities" if best.unit == "entity" else f"{best.n_items} items") + \
                (f", {best.n_seeds} seeds" if best.n_seeds > 1 else "")
            reason = (f"looks forgotten (forget acc {f:.3f} <= {rule.forgotten_ratio:g} x {f0:.3f}); "
                      f"{best.key} ({best.axis}): excess {best.excess:+.3f} [{best.lo:+.3f}, {best.hi:+.3f}], "
                      f"corrected lower bound {lb:+.3f} (one-sided {level:.4g}), over the {best.control} "
                      f"(levels: checkpoint {best.raw:.3f}, control {best.control_value:.3f}; {unit})")
            if verdict == HIDDEN:
                reason += ("; no attack that holds only the checkpoint recovers the answers, but undoing a small "
                           "edit with the original's weights or states does: hidden by a small edit, not deleted")
        more, call = math.nan, ""
        if verdict in ("partially suppressed", "inconclusive"):
            more, call = items_for_call([e for e in ev if e.key in counted], rule)
        v = CheckpointVerdict(
            name, verdict, f, f0, lf,
            best.excess if best else math.nan, lb if best else math.nan, best.hi if best else math.nan,
            best.key if best else "", best.control if best else "", tuple(replace(e, boot=None) for e in ev),
            tuple(counted), reason, why,
            more, call, axis if best else "", best.unit if best else "item", level if best else math.nan)
        if call:
            what = "entities" if v.unit == "entity" else "forget items"
            v = replace(v, reason=reason + (f". Not definite with {v.items_audited()} {what}: at these excesses "
                                            f"{v.projection()} (the interval narrowing as 1/sqrt(n); a projection, "
                                            "not a promise)"))
        out.append(v)
    return VerdictResult(tuple(out), rule.rule_text(), rule, reference)
