"""open-unlearning (OU) result files: read TOFU_EVAL / MUSE_EVAL / *_SUMMARY json, write the scorecard as them.

Researchers already hold OU evaluations of their checkpoints; reading them lets the dashboard show those numbers
beside its own (with the difference) and lets a retain model's EVAL file stand in for the deletion reference
(forget quality and PrivLeak, as OU computes them from `retain_logs_path`). Writing them sends the scorecard
straight into OU's tooling. Layout, as OU's Evaluator writes it (json.dump, NaN allowed):
    EVAL:    {metric: {"agg_value": x, "value_by_index": {"<row>": {"prob", "avg_loss", "score", "rougeL_recall",
              "generation", ...}}}}, MIA metrics {"forget": {...}, "holdout": {...}, "auc": x, "agg_value": x}
    SUMMARY: {metric: agg_value}
A file with a wrong structure raises OUFormatError naming the key; a missing key gives a partial view whose
`problems` say what is absent. MIA scores keep OU's sign (higher = non-member), the negative of the scorecard's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

__all__ = ["OUEval", "OUFormatError", "compare_with_scorecard", "load_ou", "parse_ou", "reference_scores",
           "scorecard_to_ou_eval", "summary_of_eval", "write_ou"]

# per-item metrics: OU metric name -> (split, field inside value_by_index[row], scorecard item column)
ITEM_METRICS: dict[str, tuple[str, str, str]] = {
    "forget_Q_A_Prob": ("forget", "prob", "p"),
    "forget_Q_A_ROUGE": ("forget", "rougeL_recall", "rougeL_recall"),
    "forget_truth_ratio": ("forget", "score", "truth_ratio"),
    "extraction_strength": ("forget", "score", "es"),
    "exact_memorization": ("forget", "score", "token_acc"),
    "retain_Q_A_Prob": ("retain", "prob", "p"),
    "retain_Q_A_ROUGE": ("retain", "rougeL_recall", "rougeL_recall"),
    "retain_Truth_Ratio": ("retain", "score", "truth_ratio"),
}
# MUSE's QA metrics on the same footing (read on import; the export writes TOFU's names)
MUSE_ITEM_METRICS: dict[str, tuple[str, str, str]] = {
    "forget_knowmem_ROUGE": ("forget", "rougeL_recall", "rougeL_recall"),
    "retain_knowmem_ROUGE": ("retain", "rougeL_recall", "rougeL_recall"),
}
# MIA metrics: OU name -> scorecard metric
MIA_METRICS: dict[str, str] = {"mia_loss": "loss", "mia_zlib": "zlib", "mia_min_k": "mink",
                               "mia_min_k_plus_plus": "minkpp"}
# aggregate metrics: OU name -> scorecard summary column (the per-item ones aggregate to these too)
AGG_METRICS: dict[str, str] = {
    "forget_Q_A_Prob": "forget_p", "forget_Q_A_ROUGE": "forget_rougeL", "forget_truth_ratio": "forget_truth_ratio",
    "extraction_strength": "forget_es", "exact_memorization": "forget_token_acc", "retain_Q_A_Prob": "retain_p",
    "retain_Q_A_ROUGE": "retain_rougeL", "retain_Truth_Ratio": "retain_truth_ratio",
    "forget_quality": "forget_quality", "model_utility": "model_utility", "privleak": "privleak_mink",
    **{ou: f"mia_auc_{m}" for ou, m in MIA_METRICS.items()},
    "forget_knowmem_ROUGE": "forget_rougeL", "retain_knowmem_ROUGE": "retain_rougeL",
}
_READ_ITEM_METRICS = {**ITEM_METRICS, **MUSE_ITEM_METRICS}
ITEM_COLUMNS = ["split", "item", "metric", "value", "avg_loss", "generation"]


class OUFormatError(ValueError):
    """An OU result file whose structure is wrong; the message names the file and the key."""


@dataclass
class OUEval:
    """One imported OU result file: aggregates per metric, per-item values, and what was missing (partial view)."""

    source: str
    kind: str  # "eval" or "summary"
    agg: dict[str, float]  # OU metric name -> agg_value (NaN where the file has null/NaN)
    items: pd.DataFrame  # ITEM_COLUMNS, long format: one row per (metric, item)
    mia: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)  # metric -> forget/holdout -> item
    problems: list[str] = field(default_factory=list)

    def item_values(self, metric: str) -> dict[int, float]:
        sub = self.items[self.items.metric == metric]
        return dict(zip(sub["item"].astype(int), sub["value"].astype(float), strict=True))


def _num(x: Any, where: str) -> float:
    """A number or null/NaN (-> NaN); anything else names the key that is wrong."""
    if x is None:
        return math.nan
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise OUFormatError(f"{where} must be a number or null, got {type(x).__name__} {x!r:.60}")
    return float(x)


def _row(key: Any, where: str) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        raise OUFormatError(f"{where}: row key {key!r} is not an integer row index") from None


def _value_by_index(metric: str, node: dict, where: str, problems: list[str]) -> dict[int, dict]:
    vbi = node.get("value_by_index")
    if vbi is None:
        problems.append(f"{where}: no 'value_by_index' (only the aggregate is shown)")
        return {}
    if not isinstance(vbi, dict):
        raise OUFormatError(f"{where}['value_by_index'] must be an object {{row: {{...}}}}, got {type(vbi).__name__}")
    out = {}
    for key, entry in vbi.items():
        at = f"{where}['value_by_index'][{key!r}]"
        if entry is None:  # OU writes None for rows it could not score
            continue
        if not isinstance(entry, dict):
            raise OUFormatError(f"{at} must be an object, got {type(entry).__name__}")
        out[_row(key, at)] = entry
    return out


def _scalar_field(entry: dict, name: str, at: str) -> float:
    v = entry.get(name)
    if isinstance(v, list):  # several answers per row (OU's PERT probabilities): their mean, as OU aggregates
        vals = [_num(x, f"{at}[{name!r}]") for x in v]
        return float(np.mean(vals)) if vals else math.nan
    return _num(v, f"{at}[{name!r}]")


def parse_ou(raw: Any, source: str = "<json>") -> OUEval:
    """Validate and read an already-decoded OU EVAL or SUMMARY object."""
    if not isinstance(raw, dict):
        raise OUFormatError(f"{source}: the top level must be an object {{metric: ...}}, got {type(raw).__name__}")
    if not raw:
        raise OUFormatError(f"{source}: no metrics in the file")
    def kind_of(v):
        if isinstance(v, dict):
            return "eval"
        return "summary" if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) else "bad"

    kinds = {k: kind_of(v) for k, v in raw.items()}
    bad = [k for k, v in kinds.items() if v == "bad"]
    if bad:
        raise OUFormatError(f"{source}: metric {bad[0]!r} must be an object (EVAL file) or a number (SUMMARY file), "
                            f"got {type(raw[bad[0]]).__name__}")
    if len(set(kinds.values())) > 1:
        num = next(k for k, v in kinds.items() if v == "summary")
        obj = next(k for k, v in kinds.items() if v == "eval")
        raise OUFormatError(f"{source}: mixes SUMMARY numbers (metric {num!r}) with EVAL objects (metric {obj!r}); "
                            "an OU file is one or the other")
    kinds = set(kinds.values())
    kind = kinds.pop()
    problems: list[str] = []
    agg: dict[str, float] = {}
    rows: list[dict] = []
    mia: dict[str, dict[str, dict[int, float]]] = {}
    if kind == "summary":
        agg = {k: _num(v, f"{source}[{k!r}]") for k, v in raw.items()}
        return OUEval(source, kind, agg, pd.DataFrame(columns=ITEM_COLUMNS), {}, problems)
    for metric, node in raw.items():
        where = f"{source}[{metric!r}]"
        if "agg_value" not in node:
            problems.append(f"{where}: no 'agg_value'")
            agg[metric] = math.nan
        else:
            agg[metric] = _num(node["agg_value"], f"{where}['agg_value']")
        if metric in MIA_METRICS or ("forget" in node and "holdout" in node):
            mia[metric] = {}
            for side in ("forget", "holdout"):
                sub = node.get(side)
                if sub is None:
                    problems.append(f"{where}: no {side!r} scores")
                    continue
                if not isinstance(sub, dict):
                    raise OUFormatError(f"{where}[{side!r}] must be an object, got {type(sub).__name__}")
                entries = _value_by_index(metric, sub, f"{where}[{side!r}]", problems)
                mia[metric][side] = {i: _scalar_field(e, "score", f"{where}[{side!r}][{i}]")
                                     for i, e in entries.items()}
            if "auc" in node:
                agg[metric] = _num(node["auc"], f"{where}['auc']")
            continue
        if metric not in _READ_ITEM_METRICS:
            continue  # aggregate-only (forget_quality, privleak, model_utility) or a metric the audit has no twin for
        split, fname, _ = _READ_ITEM_METRICS[metric]
        for i, entry in _value_by_index(metric, node, where, problems).items():
            at = f"{where}['value_by_index']['{i}']"
            if fname not in entry:
                problems.append(f"{at}: no {fname!r}")
                value = math.nan
            else:
                value = _scalar_field(entry, fname, at)
            avg_loss = _scalar_field(entry, "avg_loss", at) if "avg_loss" in entry else math.nan
            gen = entry.get("generation")
            rows.append({"split": split, "item": i, "metric": metric, "value": value, "avg_loss": avg_loss,
                         "generation": gen if isinstance(gen, str) else None})
    return OUEval(source, kind, agg, pd.DataFrame(rows, columns=ITEM_COLUMNS), mia, problems)


def load_ou(path_or_bytes: str | Path | bytes, source: str | None = None) -> OUEval:
    """Read an OU result file from a path or uploaded bytes; json errors and wrong keys -> OUFormatError."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        text, source = bytes(path_or_bytes).decode("utf-8", errors="replace"), source or "<upload>"
    else:
        p = Path(path_or_bytes)
        source = source or p.name
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise OUFormatError(f"{source}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = json.loads(text)  # Python's json reads OU's NaN / Infinity
    except json.JSONDecodeError as exc:
        raise OUFormatError(f"{source}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    return parse_ou(raw, source)


# ------------------------------------------------------------------------------------------------------ export


def _f(x: Any) -> float | None:
    """OU writes float('nan') as NaN; None only for rows it could not score."""
    return float(x) if x is not None else None


def scorecard_to_ou_eval(result, model: str) -> dict[str, Any]:
    """One checkpoint's scorecard as an OU EVAL object (metric names as OU's TOFU config names them).

    Only metrics the scorecard computed with the same meaning are written; MIA scores get OU's sign back."""
    items = result.items_frame()
    items = items[items.model == model]
    if items.empty and model not in {r["model"] for r in result.summary}:
        raise KeyError(f"no model named {model!r} in this scorecard")
    s = result.scores(model)
    out: dict[str, Any] = {}
    for metric, (split, fname, col) in ITEM_METRICS.items():
        sub = items[items.split == split].sort_values("item")
        if sub.empty or sub[col].isna().all():
            continue
        vbi = {}
        for _, r in sub.iterrows():
            entry: dict[str, Any] = {fname: _f(r[col])}
            if fname == "prob":
                entry["avg_loss"] = -math.log(r[col]) if r[col] > 0 else math.inf
            if metric.endswith("ROUGE"):
                entry.update(generation=r["generated_answer"], ground_truth=r["gold_answer"], input=r["question"])
            vbi[str(int(r["item"]))] = entry
        out[metric] = {"agg_value": _f(s[AGG_METRICS[metric]]), "value_by_index": vbi}
    mia = result.mia_frame()
    mia = mia[mia.model == model]
    for ou_name, m in MIA_METRICS.items():
        sub = mia[mia.metric == m]
        if sub.empty:
            continue
        node: dict[str, Any] = {}
        for side in ("forget", "holdout"):
            side_scores = sub[sub.split == side].sort_values("item")
            scores = {str(int(i)): {"score": -float(v)} for i, v in zip(side_scores["item"], side_scores["score"],
                                                                       strict=True)}
            node[side] = {"agg_value": float(np.mean([v["score"] for v in scores.values()])) if scores else None,
                          "value_by_index": scores}
        node["auc"] = node["agg_value"] = _f(s[f"mia_auc_{m}"])
        out[ou_name] = node
    for metric, col in (("forget_quality", "forget_quality"), ("model_utility", "model_utility"),
                        ("privleak", "privleak_mink")):
        if not math.isnan(s.get(col, math.nan)):
            out[metric] = {"agg_value": _f(s[col])}
    return dict(sorted(out.items()))  # OU's save_logs sorts the metric names


def summary_of_eval(eval_obj: dict[str, Any]) -> dict[str, float]:
    """OU's SUMMARY: metric -> agg_value for every metric that has one."""
    return {k: v["agg_value"] for k, v in eval_obj.items() if isinstance(v, dict) and v.get("agg_value") is not None}


def write_ou(result, model: str, out_dir: str | Path, benchmark: str = "TOFU") -> tuple[Path, Path]:
    """Write <benchmark>_EVAL.json and <benchmark>_SUMMARY.json for one checkpoint (OU's file names)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ev = scorecard_to_ou_eval(result, model)
    e, s = out_dir / f"{benchmark}_EVAL.json", out_dir / f"{benchmark}_SUMMARY.json"
    e.write_text(json.dumps(ev, indent=4))
    s.write_text(json.dumps(summary_of_eval(ev), indent=4))
    return e, s


# ------------------------------------------------------------------------------------------------- comparison


def reference_scores(ev: OUEval, reference: OUEval) -> dict[str, float]:
    """Forget quality and PrivLeak of `ev` against a retain model's EVAL, exactly as OU computes them from its
    retain_logs_path: KS p-value of the forget truth ratios, and ((1-AUC) - (1-AUC_ref)) / ((1-AUC_ref) + 1e-10)
    x 100 on Min-K AUC. NaN where either file lacks the numbers."""
    out = {"forget_quality": math.nan, "privleak": math.nan}
    a = [v for v in ev.item_values("forget_truth_ratio").values() if not math.isnan(v)]
    b = [v for v in reference.item_values("forget_truth_ratio").values() if not math.isnan(v)]
    if a and b:
        out["forget_quality"] = float(ks_2samp(a, b).pvalue)
    auc, ref = ev.agg.get("mia_min_k", math.nan), reference.agg.get("mia_min_k", math.nan)
    if not (math.isnan(auc) or math.isnan(ref)):
        out["privleak"] = ((1 - auc) - (1 - ref)) / ((1 - ref) + 1e-10) * 100
    return out


def compare_with_scorecard(result, model: str | None, ev: OUEval) -> pd.DataFrame:
    """Imported numbers beside the scorecard's own for one checkpoint, with the difference (imported - own).

    Rows: level "aggregate" per metric, level "item" per (metric, item). `model` None (a checkpoint not in this
    workspace) shows the imported numbers alone. The scorecard's definition is named in every row."""
    own = result.scores(model) if model is not None else {}
    items = result.items_frame()
    items = items[items.model == model] if model is not None else items.iloc[0:0]
    definition = result.config.definition
    rows = []
    for metric, value in ev.agg.items():
        col = AGG_METRICS.get(metric)
        mine = own.get(col, math.nan) if col else math.nan
        rows.append({"level": "aggregate", "metric": metric, "item": None, "own_column": col, "own": mine,
                     "imported": value, "difference": value - mine})
    for metric, (split, _, col) in _READ_ITEM_METRICS.items():
        imported = ev.item_values(metric)
        if not imported:
            continue
        mine = items[items.split == split].set_index("item")[col] if not items.empty else pd.Series(dtype=float)
        for i, value in sorted(imported.items()):
            m = float(mine.get(i, math.nan))
            rows.append({"level": "item", "metric": metric, "item": i, "own_column": f"{split}.{col}", "own": m,
                         "imported": value, "difference": value - m})
    df = pd.DataFrame(rows, columns=["level", "metric", "item", "own_column", "own", "imported", "difference"])
    df.insert(0, "checkpoint", model)
    df["definition"] = definition
    df["source"] = ev.source
    return df
