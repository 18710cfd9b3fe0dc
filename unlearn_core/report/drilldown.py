"""Per-item drill-down: every forget item across every checkpoint, behaviour beside what the probes recover.

The verdict aggregates over items; a reader checking it wants the items themselves: which facts a checkpoint
"forgot" behaviourally (the original answered, the checkpoint does not) and which of those a probe brings back.
One long table, one row per (forget item, checkpoint): question, gold answer, the greedy generation and the
scorecard's p~ / accuracy / truth ratio / ROUGE-L, then each probe's per-item recovery on the normalisation every
recovery rate uses (evidence.recovery), from whatever probe results the store holds. Pure pandas, no Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from unlearn_core.evidence.recovery import recovery_rate

BASE_COLUMNS = ["item", "line", "question", "gold_answer", "checkpoint", "role", "definition", "generated_answer",
                "p", "acc", "truth_ratio", "rougeL_recall", "es"]
FLAG_COLUMNS = ["max_recovery", "recovered_by", "forgot_behaviourally", "forgot_but_recovered"]
REC_PREFIX = "recovery: "


def probe_recoveries(results: Iterable[tuple[str, object]], original: str, n_items: int
                     ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """evidence key -> checkpoint -> per-item recovery over the forget split, and why a probe was left out.

    recovery = (attacked - plain) / (original - plain), clipped to [0, 1]; NaN for an item the checkpoint never
    forgot (original - plain <= 1e-6). Only probes whose forget arrays cover the forget split item by item count.
    """
    from unlearn_core.analyses.registry import collect_evidence_items

    out: dict[str, dict[str, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for key, (_, items) in collect_evidence_items(results).items():
        if original not in items.forget_plain and items.ceiling == "plain":
            skipped[key] = f"no score of the original ({original})"
            continue
        try:
            orig = items.original_scores(original)
        except KeyError:
            skipped[key] = f"no score of the original ({original})"
            continue
        if len(orig) != n_items:
            skipped[key] = f"scores {len(orig)} forget items, the scorecard {n_items}"
            continue
        per_model = {}
        for model, attacked in items.forget_attacked.items():
            plain = items.forget_plain.get(model)
            if plain is None or len(plain) != n_items or len(attacked) != n_items:
                continue
            per_model[model] = np.array([recovery_rate(float(a), float(p), float(o))
                                         for a, p, o in zip(attacked, plain, orig, strict=True)])
        out[key] = per_model
    return out, skipped


def item_drilldown(scorecard, results: Iterable[tuple[str, object]] = (), original: str | None = None,
                   recover_at: float = 0.5) -> tuple[pd.DataFrame, dict[str, str]]:
    """(table, skipped probes). One row per (forget item, checkpoint) in the scorecard's checkpoint order.

    forgot_behaviourally: the original answers the item exactly (teacher-forced accuracy 1) and the checkpoint does
    not; forgot_but_recovered: that, and some probe recovers at least `recover_at` of the item.
    """
    if not 0 < recover_at <= 1:
        raise ValueError(f"recover_at must be in (0, 1], got {recover_at!r}")
    items = scorecard.items_frame()
    items = items[items.split == "forget"]
    roles = {r["model"]: r["role"] for r in scorecard.summary}
    original = original or next((m for m, r in roles.items() if r == "original"), None)
    if original is None:
        raise ValueError("the scorecard has no original checkpoint to measure forgetting against")
    n_items = int(items[items.model == original]["item"].nunique())
    recs, skipped = probe_recoveries(results, original, n_items)
    orig_acc = items[items.model == original].set_index("item")["acc"]
    order = {m: i for i, m in enumerate(roles)}
    rows = []
    for _, r in items.iterrows():
        model, i = r["model"], int(r["item"])
        row = {"item": i, "line": r["line"], "question": r["question"], "gold_answer": r["gold_answer"],
               "checkpoint": model, "role": roles.get(model, ""), "definition": r["definition"],
               "generated_answer": r["generated_answer"], "p": r["p"], "acc": r["acc"],
               "truth_ratio": r["truth_ratio"], "rougeL_recall": r["rougeL_recall"], "es": r["es"]}
        by = {}
        for key, per_model in recs.items():
            v = float(per_model[model][i]) if model in per_model and model != original else math.nan
            row[REC_PREFIX + key] = v
            if not math.isnan(v):
                by[key] = v
        row["max_recovery"] = max(by.values()) if by else math.nan
        row["recovered_by"] = ", ".join(k for k, v in sorted(by.items(), key=lambda kv: -kv[1]) if v >= recover_at)
        forgot = model != original and orig_acc.get(i) == 1.0 and r["acc"] == 0.0
        row["forgot_behaviourally"] = bool(forgot)
        row["forgot_but_recovered"] = bool(forgot and by and max(by.values()) >= recover_at)
        rows.append(row)
    cols = BASE_COLUMNS + [REC_PREFIX + k for k in recs] + FLAG_COLUMNS
    df = pd.DataFrame(rows, columns=cols)
    df = df.sort_values(["item", "checkpoint"], key=lambda s: s.map(order) if s.name == "checkpoint" else s,
                        kind="stable").reset_index(drop=True)
    return df, skipped


def filter_drilldown(df: pd.DataFrame, checkpoints: Iterable[str] | None = None, text: str = "",
                     forgot_but_recovered: bool = False, sort_by: str | None = None,
                     ascending: bool = True) -> pd.DataFrame:
    """The page's filters as one pure function: checkpoints, a case-insensitive search over question / gold /
    generation, the "forgot behaviourally but a probe recovers" view, and a sort column."""
    out = df
    if checkpoints is not None:
        out = out[out.checkpoint.isin(list(checkpoints))]
    if text.strip():
        t = text.strip().lower()
        hay = (out.question.fillna("") + " " + out.gold_answer.fillna("") + " "
               + out.generated_answer.fillna("")).str.lower()
        out = out[hay.str.contains(t, regex=False)]
    if forgot_but_recovered:
        out = out[out.forgot_but_recovered]
    if sort_by:
        if sort_by not in out.columns:
            raise ValueError(f"cannot sort by {sort_by!r}: no such column")
        out = out.sort_values(sort_by, ascending=ascending, na_position="last", kind="stable")
    return out.reset_index(drop=True)
