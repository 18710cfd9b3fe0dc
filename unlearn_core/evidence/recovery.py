"""The one normalisation every recovery / restoration rate uses (methods.md, intro): numbers compare across audits."""

from __future__ import annotations

import math


def recovery_rate(attacked: float, plain: float, original: float, eps: float = 1e-6) -> float:
    """(F(unl, attacked) - F(unl, plain)) / (F(orig, plain) - F(unl, plain)), clipped to [0, 1].

    NaN when a value is not finite or the checkpoint did not forget in the first place (denominator <= eps).
    """
    if not all(math.isfinite(v) for v in (attacked, plain, original)):
        return math.nan
    denom = original - plain
    if denom <= eps:
        return math.nan
    return float(min(1.0, max(0.0, (attacked - plain) / denom)))
