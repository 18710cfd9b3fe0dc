"""Probe validity (methods.md section 6): does a probe separate planted suppressions from deletions at all?

A probe is evidence only if, on checkpoints whose truth is known (the demo lab's planted controls: suppressed_head,
suppressed_lowrank = suppressed; retrained = deleted), it recovers the suppressed ones clearly more than the
deleted ones. Measured three ways per probe: uncalibrated (the raw recovery number, and the per-item AUC of the
recovery gain, suppressed items vs deleted items), calibrated against the retain-only reference, and calibrated
against the holdout split. The false-recovery rate is what the probe reports on the deletion controls.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from unlearn_core.evidence.calibration import CONTROL_HOLDOUT, CONTROL_REFERENCE, calibrate, item_gains
from unlearn_core.evidence.recovery import recovery_rate

UNCALIBRATED = "uncalibrated (raw recovery)"


def _climb(items, model: str, original: str) -> float:
    """The uncalibrated number a naive reading takes: the attack's climb from the model's own floor towards the
    original (the project's one recovery rate, evidence.recovery)."""
    att = np.asarray(items.forget_attacked[model], np.float64)
    plain = np.asarray(items.forget_plain[model], np.float64)
    return recovery_rate(float(att.mean()), float(plain.mean()), float(items.original_scores(original).mean()))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a suppressed item's gain > a deleted item's gain), ties count half (Mann-Whitney U / (n m))."""
    if not len(pos) or not len(neg):
        return math.nan
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def probe_validity(items_by_key: dict[str, tuple[object, object]], truth: dict[str, str], original: str,
                   reference: str | None, rule, units=None, twin: str | None = "retrained") -> pd.DataFrame:
    """One row per (probe, control): suppressed controls' worst value vs deletion controls' worst value.

    truth: checkpoint -> "suppressed" | "deleted"; the run's reference (role retain_only) is the control, never
    evaluated against itself. twin: the deletion control trained exactly like the reference (another seed and
    order): its excess is the reference-to-twin gap, what two deletions differ by; no excess below it means anything.
    """
    rows = []
    for key, (ev, items) in items_by_key.items():
        present = [m for m in truth if m in items.forget_plain and m != original]
        ref = reference if reference in items.forget_plain else None
        sup = [m for m in present if truth[m] == "suppressed"]
        dele = [m for m in present if truth[m] == "deleted" and m != ref]
        if not sup or not dele:
            continue
        raw = {m: _climb(items, m, original) for m in sup + dele}
        pos = np.concatenate([item_gains(items, m) for m in sup])
        neg = np.concatenate([item_gains(items, m) for m in dele])
        rows.append({**_row(key, UNCALIBRATED, sup, dele, {m: (raw[m], raw[m], raw[m]) for m in raw}, rule,
                              auc=_auc(pos, neg)), "axis": ev.axis})
        for control, against in ((CONTROL_REFERENCE, ref), (CONTROL_HOLDOUT, None)):
            if control == CONTROL_REFERENCE and ref is None:
                continue
            if control == CONTROL_HOLDOUT and (ev.control != "reference+holdout"
                                               or not all(items.has_holdout(m) for m in sup + dele)):
                continue
            fu = units.get("forget") if units else None
            hu = units.get("holdout") if units else None
            if fu is not None and items.forget_index is not None:
                fu = fu.subset(items.forget_index)
            if hu is not None and items.holdout_index is not None:
                hu = hu.subset(items.holdout_index)
            cal = {m: calibrate(items, m, original, against, ev.control, rule.n_boot, rule.seed, rule.ci, fu, hu)
                   for m in sup + dele}
            row = _row(key, control, sup, dele, {m: (c.excess, c.lo, c.hi) for m, c in cal.items()}, rule)
            row["axis"] = ev.axis
            if twin in cal:
                row["twin_gap"] = cal[twin].excess
                row["twin_gap_hi"] = cal[twin].hi
            row["unit"] = next(iter(cal.values())).unit
            rows.append(row)
    cols = ["evidence", "axis", "control", "suppressed_controls", "deletion_controls", "suppressed_worst",
            "deletion_worst", "separates", "false_recovery", "false_calls", "missed", "twin_gap", "twin_gap_hi", "unit",
            "auc_items", "details"]
    return pd.DataFrame(rows, columns=cols)


def _row(key: str, control: str, sup: list[str], dele: list[str], vals: dict[str, tuple[float, float, float]],
         rule, auc: float = math.nan) -> dict:
    """vals: model -> (point, lo, hi); uncalibrated rows have lo = hi = point."""
    worst_sup = min(vals[m][1] for m in sup)  # the weakest suppressed control's lower bound
    worst_del = max(vals[m][2] for m in dele)  # the strongest deletion control's upper bound
    return {
        "evidence": key, "control": control, "suppressed_controls": ", ".join(sup),
        "deletion_controls": ", ".join(dele), "suppressed_worst": worst_sup, "deletion_worst": worst_del,
        "separates": bool(worst_sup > worst_del and worst_sup >= rule.suppressed_at and worst_del < rule.suppressed_at),
        "false_recovery": max(vals[m][0] for m in dele),
        "false_calls": sum(vals[m][1] >= rule.suppressed_at for m in dele),
        "missed": sum(vals[m][1] < rule.suppressed_at for m in sup),
        "auc_items": auc,
        "details": "; ".join(f"{m}: {vals[m][0]:.2f} [{vals[m][1]:.2f}, {vals[m][2]:.2f}]" for m in sup + dele),
    }
