"""Verdict per checkpoint (methods.md section 6): deleted / partially suppressed / suppressed / inconclusive.

Why calibrated: a raw recovery number measures the attack as much as the checkpoint. Every probe has a false-recovery
rate of its own, so the evidence is the EXCESS recovery of the checkpoint over a control (the retain-only reference on
the same items, or, for self-contained attacks without a reference, the holdout split), with a bootstrap interval
(evidence.calibration). The verdict reads the interval, not the point; probes with no usable control are shown
and not counted.

Rule (thresholds in VerdictConfig; e = excess recovery over the control, [lo, hi] its 95% interval):
  looks forgotten  <=>  forget_acc <= forgotten_ratio * forget_acc(original)      (else "not forgotten")
  over the COUNTED, calibrated evidence:
    suppressed            if max lo >= suppressed_at
    partially suppressed  if max lo >= partial_at
    deleted               if max hi <  suppressed_at
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

from unlearn_core.evidence.calibration import CONTROL_NONE, CalibratedEvidence, calibrate
from unlearn_core.store.codec import register_result

OUT_OF_REACH = 10  # item projections above this multiple of the items audited are reported as out of reach
VERDICTS = ("deleted", "partially suppressed", "suppressed", "inconclusive", "not forgotten", "unknown",
            "nothing to audit")
NOTHING_TO_AUDIT = ("the original answers none of the forget questions (forget accuracy {f0:.3f}): nothing was "
                    "known, so nothing can look forgotten or be audited; check the forget set and the prompt "
                    "template (data check)")


@register_result
@dataclass(frozen=True)
class VerdictConfig:
    forgotten_ratio: float = 0.5
    suppressed_at: float = 0.15  # the lower bound of the excess recovery must clear this
    partial_at: float = 0.1
    # evidence keys that count; None: the evidence each analysis declares counted (its SPEC's Evidence.counted,
    # resolved by run.audit before the verdict, so the rule text names them)
    counted: tuple[str, ...] | None = None
    n_boot: int = 2000  # bootstrap resamples
    ci: float = 0.95
    seed: int = 0
    # the looks-forgotten half also reads leak@k when the scorecard sampled (leak_k > 0): greedy decoding hides an
    # answer that still has real probability mass, which k samples at temperature T find
    read_leak: bool = True

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

    def rule_text(self) -> str:
        counted = ("those their analyses declare counted" if self.counted is None else ", ".join(self.counted))
        pct = f"{self.ci:.0%}"
        leak = (f" and, where leak@k was sampled, leak@k - the reference's <= {self.forgotten_ratio:g} x (the "
                "original's - the reference's)" if self.read_leak else "")
        return (f"looks forgotten if forget accuracy <= {self.forgotten_ratio:g} x the original's{leak}. Evidence = "
                f"excess recovery of each counted probe ({counted}) over its control (the retain-only "
                f"reference on the same items, else the holdout split for self-contained attacks), with a {pct} "
                f"bootstrap interval [lo, hi] ({self.n_boot} resamples, seed {self.seed}). Suppressed if the largest "
                f"lo >= {self.suppressed_at:g}; partially suppressed if it is >= {self.partial_at:g}; deleted if "
                f"every hi < {self.suppressed_at:g}; inconclusive otherwise. Probes without a control are shown, "
                "labelled 'needs a deletion reference', and not counted.")


@register_result
@dataclass(frozen=True)
class CheckpointVerdict:
    model: str
    verdict: str
    forget_acc: float
    original_forget_acc: float
    looks_forgotten_score: float  # 1 - forget_acc / original forget_acc, clipped to [0, 1]
    retention: float  # excess of the deciding evidence (max lower bound), NaN if none
    retention_lo: float
    retention_hi: float
    retention_from: str  # which evidence decided
    control: str  # what that evidence was calibrated against
    evidence: tuple[CalibratedEvidence, ...]  # every piece, counted or not
    counted: tuple[str, ...]  # keys of the pieces that counted
    reason: str
    not_counted: dict[str, str] = field(default_factory=dict)  # key -> why it did not count
    # "partially suppressed" / "inconclusive": forget items for a definite call at the same excess (NaN otherwise)
    items_for_call: float = math.nan
    call_if_more_items: str = ""  # the call those items would give: "suppressed" | "deleted" | ""

    def projection(self) -> str:
        """The item projection in words, the same in the reason, the CLI and the page; "" without one."""
        if not self.call_if_more_items:
            return ""
        return projection_phrase(self.items_for_call, self.call_if_more_items, self.items_audited())

    def items_audited(self) -> int:
        """Forget items behind the counted evidence (the n an item projection scales from)."""
        return max((e.n_items for e in self.evidence if e.key in self.counted), default=0)


@register_result
@dataclass(frozen=True)
class VerdictResult:
    verdicts: tuple[CheckpointVerdict, ...]
    rule: str
    config: VerdictConfig
    reference: str | None  # the retain-only reference's name, or None (holdout controls)

    def to_frame(self) -> pd.DataFrame:
        """verdicts.csv: one row per checkpoint with the deciding number, its interval and control."""
        rows = []
        for v in self.verdicts:
            row = {"model": v.model, "verdict": v.verdict, "forget_acc": v.forget_acc,
                   "original_forget_acc": v.original_forget_acc, "looks_forgotten": v.looks_forgotten_score,
                   "retention_excess": v.retention, "ci_low": v.retention_lo, "ci_high": v.retention_hi,
                   "retention_from": v.retention_from, "control": v.control,
                   "items_for_definite_call": v.items_for_call, "call_with_more_items": v.call_if_more_items}
            for e in v.evidence:
                row[f"{e.key}_excess"] = e.excess
                row[f"{e.key}_ci"] = "" if math.isnan(e.lo) else f"[{e.lo:.3f}, {e.hi:.3f}]"
            row["reason"] = v.reason
            rows.append(row)
        return pd.DataFrame(rows)

    def evidence_frame(self) -> pd.DataFrame:
        """evidence.csv: every probe x checkpoint with raw recovery, control, excess, interval, counted."""
        rows = []
        for v in self.verdicts:
            for e in v.evidence:
                rows.append({"model": v.model, "evidence": e.key, "control": e.control, "raw_recovery": e.raw,
                             "control_recovery": e.control_value, "excess": e.excess, "ci_low": e.lo,
                             "ci_high": e.hi, "n_items": e.n_items, "n_control": e.n_control,
                             "counted": e.key in v.counted, "why_not_counted": v.not_counted.get(e.key, ""),
                             "attack": e.attack, "metric": e.metric})
        return pd.DataFrame(rows)

    def get(self, model: str) -> CheckpointVerdict:
        for v in self.verdicts:
            if v.model == model:
                return v
        raise KeyError(model)


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def calibrate_all(items_by_key: dict[str, tuple[object, object]], checkpoints: list[str], original: str,
                  reference: str | None, rule: VerdictConfig = VerdictConfig()) -> dict[str, list[CalibratedEvidence]]:
    """checkpoint -> its calibrated evidence, one per probe that ran on it. items_by_key: key -> (Evidence, items)."""
    out: dict[str, list[CalibratedEvidence]] = {c: [] for c in checkpoints}
    for ev, items in items_by_key.values():
        if original not in items.forget_plain:
            continue
        for c in checkpoints:
            if c in items.forget_plain and c != original:
                e = calibrate(items, c, original, reference, ev.control, rule.n_boot, rule.seed, rule.ci)
                out[c].append(replace(e, axis=ev.axis, counted_by_default=ev.counted, why_not=ev.why_not))
    return out


def _decide(evidence: list[CalibratedEvidence], rule: VerdictConfig) -> tuple[str, CalibratedEvidence | None,
                                                                             list[str], dict[str, str]]:
    counted, why = [], {}
    for e in evidence:
        if e.control == CONTROL_NONE:
            why[e.key] = "needs a deletion reference (it copies the original's states; no self-contained control)"
        elif not (e.counted_by_default if rule.counted is None else e.key in rule.counted):
            why[e.key] = ((e.why_not if rule.counted is None or not e.counted_by_default else "")
                          or "not among the counted probes of this rule")
        elif not e.calibrated:
            why[e.key] = "the checkpoint did not forget on this probe's items (no recovery to measure)"
        else:
            counted.append(e)
    if not counted:
        return "unknown", None, [], why
    best = max(counted, key=lambda e: (e.lo, e.excess))
    if best.lo >= rule.suppressed_at:
        verdict = "suppressed"
    elif best.lo >= rule.partial_at:
        verdict = "partially suppressed"
    elif max(e.hi for e in counted) < rule.suppressed_at:
        verdict = "deleted"
    else:
        verdict = "inconclusive"
        best = max(counted, key=lambda e: e.hi)
    return verdict, best, [e.key for e in counted], why


def items_for_call(counted: list[CalibratedEvidence], rule: VerdictConfig) -> tuple[float, str]:
    """(forget items, call): how many items would turn "partially suppressed" / "inconclusive" into a definite call
    if every excess stayed as measured and the interval narrowed as 1/sqrt(n) (the bootstrap spread per item
    unchanged; with a holdout control, both splits grown in proportion). Suppressed needs one counted probe with
    lo >= suppressed_at: n ((e - lo) / (e - line))^2 for the cheapest; deleted needs every hi < line: the largest
    n ((hi - e) / (line - e))^2. A projection for planning an audit, not a promise: more items also move the excess."""
    line = rule.suppressed_at
    usable = [e for e in counted if math.isfinite(e.lo) and math.isfinite(e.hi) and e.n_items > 0]
    if not usable:
        return math.nan, ""
    up = [e.n_items * ((e.excess - e.lo) / (e.excess - line)) ** 2 for e in usable if e.excess > line]
    if up:
        return float(math.ceil(min(up))), "suppressed"
    if all(e.excess < line for e in usable):
        return float(math.ceil(max(e.n_items * ((e.hi - e.excess) / (line - e.excess)) ** 2 for e in usable))), \
            "deleted"
    return math.nan, ""


def projection_phrase(items: float, call: str, n: int) -> str:
    """Beyond OUT_OF_REACH times the items audited the excess sits so near the line that collecting more items is not
    a realistic way to a definite call (on the Llama lab, an excess of +0.147 against the 0.15 line projected 141,786
    items): said so, instead of a number that reads like a plan."""
    if n > 0 and items > OUT_OF_REACH * n:
        return (f"more forget items would not settle it: the excess sits near the line, so about {items:.0f}, over "
                f"{OUT_OF_REACH}x these {n}, would make it \"{call}\"")
    return f"about {items:.0f} forget items would make it \"{call}\""


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
        verdict, best, counted, why = _decide(ev, rule)
        if not math.isnan(f0) and f0 <= 0:  # first: 0 <= 0.5 x 0 would call never-known facts "forgotten"
            verdict, best, counted, reason = "nothing to audit", None, [], NOTHING_TO_AUDIT.format(f0=f0)
        elif math.isnan(f) or math.isnan(f0):
            verdict, reason = "unknown", "no behavioural forget accuracy for this checkpoint or the original"
        elif f > rule.forgotten_ratio * f0:
            verdict, reason = "not forgotten", f"forget acc {f:.3f} > {rule.forgotten_ratio:g} x original {f0:.3f}"
        elif (leaks := _still_leaks(behaviour, name, original, reference, rule)) is not None:
            verdict, best, counted, reason = "not forgotten", None, [], leaks
        elif best is None:
            verdict = "unknown"
            reason = ("looks forgotten, but no counted evidence with a control"
                      + (f" ({'; '.join(f'{k}: {w}' for k, w in why.items())})" if why else ": run a probe"))
        else:
            reason = (f"looks forgotten (forget acc {f:.3f} <= {rule.forgotten_ratio:g} x {f0:.3f}); "
                      f"{best.key}: excess {best.excess:+.3f} [{best.lo:+.3f}, {best.hi:+.3f}] over the "
                      f"{best.control} (raw {best.raw:.3f}, control {best.control_value:.3f})")
        more, call = math.nan, ""
        if verdict in ("partially suppressed", "inconclusive"):
            more, call = items_for_call([e for e in ev if e.key in counted], rule)
        v = CheckpointVerdict(
            name, verdict, f, f0, lf,
            best.excess if best else math.nan, best.lo if best else math.nan, best.hi if best else math.nan,
            best.key if best else "", best.control if best else "", tuple(ev), tuple(counted), reason, why,
            more, call)
        if call:
            v = replace(v, reason=reason + (f". Not definite with {v.items_audited()} forget items: at these excesses "
                                            f"{v.projection()} (the interval narrowing as 1/sqrt(n); a projection, "
                                            "not a promise)"))
        out.append(v)
    return VerdictResult(tuple(out), rule.rule_text(), rule, reference)
