"""Numbers printed so they cannot contradict the rule they are compared against.

Why: a lower bound of 0.1496 printed with two or three digits reads "0.15" / "0.150" on the `lo >= 0.15` line while
the rule (correctly) says it is below. Every number a rule reads is printed with the fewest digits that keep it on
the same side of every threshold as the exact value; if even `max_digits` cannot, the side is written out.
"""

from __future__ import annotations

import math


def _same_side(shown: float, x: float, thresholds) -> bool:
    return all((shown >= t) == (x >= t) for t in thresholds)


def fmt_rule(x: float, thresholds=(), digits: int = 2, max_digits: int = 4, signed: bool = False) -> str:
    """x with >= `digits` decimals, more where rounding would move it across a threshold (rules read `x >= t`).

    Beyond `max_digits` the printed number is followed by its side, e.g. "0.1500 (< 0.15)"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    x = float(x)
    spec = "+" if signed else ""
    for d in range(digits, max_digits + 1):
        text = f"{x:{spec}.{d}f}"
        if _same_side(float(text), x, thresholds):  # the printed text itself, as a reader would compare it
            return text
    crossed = next(t for t in thresholds if (float(f"{x:.{max_digits}f}") >= t) != (x >= t))
    return f"{x:{spec}.{max_digits}f} ({'<' if x < crossed else '>='} {crossed:g})"


def verdict_reading(v, rule) -> str:
    """The deciding comparison of one CheckpointVerdict, with numbers that agree with its verdict."""
    f, f0 = v.forget_acc, v.original_forget_acc
    if v.verdict in ("unknown", "nothing to audit") or f is None or math.isnan(f):
        return ""
    line = rule.forgotten_ratio * f0
    if v.verdict == "not forgotten":
        return f"forget acc {fmt_rule(f, (line + 1e-12,), 3)} > {rule.forgotten_ratio:g} x {f0:.3f}"
    counted = [e for e in v.evidence if e.key in v.counted] or None
    max_hi = max(e.hi for e in counted) if counted else v.retention_hi
    lo = fmt_rule(v.retention_lo, (rule.suppressed_at, rule.partial_at), signed=True)
    hi = fmt_rule(max_hi, (rule.suppressed_at,), signed=True)
    lv = v.retention_level
    level = "" if lv is None or math.isnan(lv) else f" (one-sided {lv:.3g})"
    what = f"{v.retention_from} LB{level}"
    if v.verdict == "suppressed":
        return f"recoverable: {what} {lo} >= {rule.suppressed_at:g}"
    if v.verdict == "partially suppressed":
        return f"recoverable: {what} {lo} >= {rule.partial_at:g} and < {rule.suppressed_at:g}"
    if v.verdict == "hidden by a small edit":
        return f"only with the original: {what} {lo} >= {rule.suppressed_at:g}; no recoverable probe clears the line"
    if v.verdict == "deleted":
        return f"largest hi {hi} < {rule.suppressed_at:g}"
    return f"no corrected LB >= {rule.partial_at:g} but largest hi {hi} >= {rule.suppressed_at:g}"  # inconclusive
