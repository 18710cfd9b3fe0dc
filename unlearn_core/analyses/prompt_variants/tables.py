"""The prompt-variant probe's tables: per (checkpoint, variant) means beside the plain means on the same items, the
level excess per variant (evidence.calibration's one definition, point estimate), and the multiple-choice reading."""

from __future__ import annotations

import math

import numpy as np

from unlearn_core.analyses.common.probes import PLAIN, ItemTable, summary_row
from unlearn_core.analyses.prompt_variants.prompts import BEST, MC, VARIANTS
from unlearn_core.evidence.calibration import ProbeItems, calibrate
from unlearn_core.types import LoadedModel

CONTROL = "reference+holdout"  # the evidence's control type (spec.CONTROLS)
SUMMARY_EXTRA = ("n_forget", "forget_p_plain", "level_excess", "control")
MC_COLUMNS = ("model", "role", "split", "n_items", "n_options", "chance", "gold_mass", "accuracy", "level_excess",
              "control")


def nanmean(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(a.mean()) if len(a) else math.nan


def level_excess(table: ItemTable, variant: str, model: str, original: str, reference: str | None,
                  ceiling: str = "plain") -> tuple[float, str]:
    """The calibrated level (evidence.calibration, its one definition) of one variant for one model, on the items
    it applies to: against the reference on those items, else the model's own holdout; point estimate only."""
    def sub(split: str, key: str) -> dict[str, np.ndarray]:
        by_model = table.get(split, {})
        ok = None
        for m in by_model:
            if variant in by_model[m]:
                f = np.isfinite(by_model[m][variant])
                ok = f if ok is None else ok & f
        if ok is None:
            return {}
        return {m: by_model[m][key][ok] for m in by_model if key in by_model[m]}

    att_key = variant
    plain_key = variant if ceiling == "attacked" else PLAIN
    items = ProbeItems("level", variant, "", sub("forget", plain_key), sub("forget", att_key),
                       sub("holdout", plain_key), sub("holdout", att_key), ceiling=ceiling)
    if model == original or model not in items.forget_attacked or not len(items.forget_attacked[model]):
        return math.nan, ""
    cal = calibrate(items, model, original, reference, CONTROL, n_boot=1)  # the point needs no resamples
    return cal.excess, cal.control


def summary_rows(items: ItemTable, acc: dict, targets: list[LoadedModel], original: str, ref: str | None) -> list[dict]:
    """Per (model, variant): forget and retain means on the items the variant applies to, beside the plain means on
    THOSE items (a variant that skips items is compared like for like), the climb (recovery) and the level excess."""
    rows = []
    for lm in targets:
        for v in (PLAIN, *VARIANTS, BEST):
            f = items.get("forget", {}).get(lm.name, {}).get(v)
            if f is None or not np.isfinite(f).any():
                continue
            fm = np.isfinite(f)
            r = items.get("retain", {}).get(lm.name, {}).get(v, np.array([]))
            rm = np.isfinite(r)

            def means(split: str, model: str, key: str, mask: np.ndarray, vals: np.ndarray) -> tuple[float, float]:
                if not len(vals):
                    return math.nan, math.nan
                return nanmean(vals[mask]), nanmean(acc[(split, model, key)][mask])

            fa = means("forget", lm.name, v, fm, f)
            ra = means("retain", lm.name, v, rm, r)
            fp = means("forget", lm.name, PLAIN, fm, items["forget"][lm.name][PLAIN])
            rp = means("retain", lm.name, PLAIN, rm, items["retain"][lm.name][PLAIN]) if len(r) else (math.nan,) * 2
            plain = {"forget_p": fp[0], "forget_acc": fp[1], "retain_p": rp[0], "retain_acc": rp[1]}
            o = items["forget"][original]
            orig = {"forget_p": nanmean(o[PLAIN][fm]), "forget_acc": nanmean(acc[("forget", original, PLAIN)][fm])}
            row = summary_row(lm.name, lm.role, v, fa, ra, None if v == PLAIN else plain,
                              None if v == PLAIN else orig)
            exc, control = level_excess(items, v, lm.name, original, ref) if v != PLAIN else (math.nan, "")
            rows.append({**row, "n_forget": int(fm.sum()), "forget_p_plain": fp[0], "level_excess": exc,
                         "control": control})
    return rows


def choice_rows(items: ItemTable, acc: dict, chance: dict, targets: list[LoadedModel], original: str,
                 ref: str | None) -> list[dict]:
    rows = []
    for lm in targets:
        for split in ("forget", "holdout"):
            m = items.get(split, {}).get(lm.name, {}).get(MC)
            if m is None:
                continue
            ok = np.isfinite(m)
            exc, control = (level_excess(items, MC, lm.name, original, ref, ceiling="attacked")
                            if split == "forget" else (math.nan, ""))
            ch = np.where(ok, chance[split], np.nan)
            rows.append({"model": lm.name, "role": lm.role, "split": split, "n_items": int(ok.sum()),
                         "n_options": nanmean(1.0 / ch), "chance": nanmean(ch),
                         "gold_mass": nanmean(m), "accuracy": nanmean(acc[(split, lm.name, MC)]),
                         "level_excess": exc, "control": control})
    return rows


def example_rows(texts: dict, choices: dict) -> list[dict]:
    """The first forget item under each variant, as sent (the page shows what the attacker asked)."""
    out = []
    for v, pairs in texts["forget"].items():
        if pairs and pairs[0] is not None:
            out.append({"variant": v, "prompt": pairs[0][0], "scored_continuation": pairs[0][1]})
    c = choices["forget"][0] if choices["forget"] else None
    if c is not None:
        out.append({"variant": MC, "prompt": c.prompt, "scored_continuation": " | ".join(c.letters)
                    + f" (gold: option {c.gold + 1})"})
    return out
