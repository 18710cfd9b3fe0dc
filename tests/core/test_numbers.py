"""Printed numbers never land on the wrong side of the rule's line."""

from __future__ import annotations

import dataclasses
import math

import pytest

from unlearn_core.evidence.calibration import CalibratedEvidence
from unlearn_core.evidence.numbers import fmt_rule, verdict_reading
from unlearn_core.evidence.verdict import VerdictConfig


@pytest.mark.parametrize(("x", "thresholds", "want"), [
    (0.4996, (0.5,), "0.4996"),  # not "0.50" (nor "0.500") on the >= 0.5 line
    (0.495, (0.5,), "0.49"),  # float 0.495 is 0.49499..: two digits already fall on the right side
    (0.1496, (0.15, 0.1), "0.1496"),
    (0.152, (0.15,), "0.15"),  # already on the right side at two digits
    (0.73, (0.15,), "0.73"),
    (0.149999, (0.15,), "0.1500 (< 0.15)"),  # even four digits round across: the side is written out
    (math.nan, (0.15,), "n/a"),
])
def test_fmt_rule_keeps_the_side(x, thresholds, want):
    assert fmt_rule(x, thresholds) == want


def test_fmt_rule_is_never_on_the_wrong_side():
    for i in range(0, 3000):
        x = i / 10000  # 0.0000 .. 0.2999
        for t in (0.1, 0.15):
            text = fmt_rule(x, (t,))
            shown = float(text.split()[0])
            assert (shown >= t) == (x >= t) or "(<" in text, (x, t, text)


def _ev(key, lo, hi):
    return CalibratedEvidence(key, "graddiff", "retain-only reference", 0.6, 0.3, (lo + hi) / 2, lo, hi, 16, 16,
                              "attack", "metric")


def test_verdict_reading_agrees_with_the_verdict():
    from unlearn_core.evidence.verdict import CheckpointVerdict

    rule = VerdictConfig()
    ev = (_ev("decodability", 0.1496, 0.4),)
    v = CheckpointVerdict("graddiff", "partially suppressed", 0.0, 1.0, 1.0, 0.27, 0.1496, 0.4, "decodability",
                          "retain-only reference", ev, ("decodability",), "")
    assert verdict_reading(v, rule) == "recoverable: decodability LB +0.1496 >= 0.1 and < 0.15"
    leveled = dataclasses.replace(v, retention_level=0.0125)
    assert verdict_reading(leveled, rule) == ("recoverable: decodability LB (one-sided 0.0125) +0.1496 >= 0.1 and "
                                              "< 0.15")
    deleted = CheckpointVerdict("ga", "deleted", 0.0, 1.0, 1.0, 0.05, -0.05, 0.1496, "decodability",
                                "retain-only reference", (_ev("decodability", -0.05, 0.1496),), ("decodability",), "")
    assert verdict_reading(deleted, rule) == "largest hi +0.1496 < 0.15"
    kept = CheckpointVerdict("npo", "not forgotten", 0.505, 1.0, 0.495, math.nan, math.nan, math.nan, "", "", (), (),
                             "")
    assert verdict_reading(kept, rule) == "forget acc 0.505 > 0.5 x 1.000"
