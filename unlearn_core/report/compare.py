"""Two audits side by side: what changed between two report.json files (another method version, another seed,
another library), and whether each change is larger than the audits' own intervals.

A call that flips while the two intervals overlap is read as "within the intervals" (the same evidence, drawn on
two sides of a line); a call that flips with the intervals apart is a real change. Beside the numbers, the runs'
provenance and settings are compared, so a changed number is read next to what changed in how it was made.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


class CompareError(ValueError):
    """A file that is not an audit's report.json."""


def load_report(path: str | Path) -> dict:
    """A report.json, or a CLI output folder holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.exists():
        raise CompareError(f"{path}: no report.json there (give the file or the audit's --out folder)")
    try:
        report = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CompareError(f"{p}: cannot read it as JSON ({exc})") from exc
    if not isinstance(report, dict) or not isinstance(report.get("checkpoints"), dict):
        raise CompareError(f"{p}: not an audit report (no \"checkpoints\" object)")
    return report


def _num(x) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def _overlap(lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> bool | None:
    if any(math.isnan(v) for v in (lo_a, hi_a, lo_b, hi_b)):
        return None
    return max(lo_a, lo_b) <= min(hi_a, hi_b)


def _reading(verdict_a, verdict_b, overlap: bool | None) -> str:
    if verdict_a is None:
        return "only in B"
    if verdict_b is None:
        return "only in A"
    if verdict_a == verdict_b:
        return "same call"
    if overlap is None:
        return "call changed (no interval to compare)"
    return "call changed, within the intervals" if overlap else "call changed, intervals apart"


@dataclass(frozen=True)
class Comparison:
    verdicts: pd.DataFrame  # per unlearned checkpoint: both calls, deciding numbers with intervals, the reading
    evidence: pd.DataFrame  # per checkpoint x probe: both excesses with intervals, shift, overlap
    runs: pd.DataFrame  # per provenance / setting / data field: both values and whether they are equal

    def summary(self) -> str:
        v = self.verdicts
        counts = v["reading"].value_counts()
        parts = [f"{counts[r]} {r}" for r in ("same call", "call changed, within the intervals",
                                              "call changed, intervals apart", "call changed (no interval to compare)",
                                              "only in A", "only in B") if r in counts]
        differ = self.runs[~self.runs["same"]]
        how = ", ".join(differ["field"].head(8)) + (" ..." if len(differ) > 8 else "")
        return (f"{len(v)} checkpoints: " + "; ".join(parts) +
                (f". The runs differ in: {how}" if len(differ) else ". The runs were made the same way"))


def _unlearned(report: dict) -> dict[str, dict]:
    return {n: c for n, c in report["checkpoints"].items() if "verdict" in c}


def _verdict_rows(a: dict, b: dict) -> list[dict]:
    ua, ub = _unlearned(a), _unlearned(b)
    rows = []
    for name in [*ua, *(n for n in ub if n not in ua)]:
        ca, cb = ua.get(name, {}), ub.get(name, {})
        lo_a, hi_a, lo_b, hi_b = (_num(c.get(k)) for c, k in ((ca, "retention_lo"), (ca, "retention_hi"),
                                                                (cb, "retention_lo"), (cb, "retention_hi")))
        ov = _overlap(lo_a, hi_a, lo_b, hi_b)
        ra, rb = _num(ca.get("retention")), _num(cb.get("retention"))
        rows.append({"checkpoint": name, "verdict_A": ca.get("verdict"), "verdict_B": cb.get("verdict"),
                     "reading": _reading(ca.get("verdict"), cb.get("verdict"), ov),
                     "deciding_A": ca.get("retention_from"), "retention_A": ra, "ci_low_A": lo_a, "ci_high_A": hi_a,
                     "deciding_B": cb.get("retention_from"), "retention_B": rb, "ci_low_B": lo_b, "ci_high_B": hi_b,
                     "shift": rb - ra, "intervals_overlap": ov,
                     "same_weights": (a["checkpoints"].get(name, {}).get("hash") ==
                                      b["checkpoints"].get(name, {}).get("hash")) if ca and cb else None})
    return rows


def _evidence_rows(a: dict, b: dict) -> list[dict]:
    ua, ub = _unlearned(a), _unlearned(b)
    rows = []
    for name in [n for n in ua if n in ub]:
        ea, eb = ua[name].get("evidence") or {}, ub[name].get("evidence") or {}
        for key in [*ea, *(k for k in eb if k not in ea)]:
            xa, xb = ea.get(key, {}), eb.get(key, {})
            vals = [_num(x.get(f)) for x in (xa, xb) for f in ("excess", "ci_low", "ci_high")]
            rows.append({"checkpoint": name, "evidence": key, "axis": (xa or xb).get("axis"),
                         "excess_A": vals[0], "ci_low_A": vals[1], "ci_high_A": vals[2],
                         "excess_B": vals[3], "ci_low_B": vals[4], "ci_high_B": vals[5],
                         "shift": vals[3] - vals[0], "intervals_overlap": _overlap(vals[1], vals[2], vals[4], vals[5])})
    return rows


def _flat(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list) else value


def _run_fields(report: dict) -> dict:
    prov = dict(report.get("provenance") or {})
    prov.pop("timestamp_utc", None)  # always differs
    prov.pop("command", None)  # output paths differ; what the command changed shows in the fields below
    prov.pop("models_loaded", None)  # whether the store held everything, not how the numbers were made
    out: dict = {}
    _flat("provenance", prov, out)
    _flat("settings", report.get("settings") or {}, out)
    _flat("verdict_rule", report.get("verdict_rule"), out)
    _flat("data_hash", report.get("data_hash"), out)
    _flat("n_items", report.get("n_items") or {}, out)
    _flat("reference", report.get("reference"), out)
    out.update({f"checkpoint.{n}.hash": c.get("hash") for n, c in report["checkpoints"].items()})
    return out


def compare_reports(a: dict, b: dict) -> Comparison:
    fa, fb = _run_fields(a), _run_fields(b)
    runs = [{"field": k, "A": fa.get(k), "B": fb.get(k), "same": fa.get(k) == fb.get(k)}
            for k in [*fa, *(k for k in fb if k not in fa)]]
    verdict_cols = ["checkpoint", "verdict_A", "verdict_B", "reading", "deciding_A", "retention_A", "ci_low_A",
                    "ci_high_A", "deciding_B", "retention_B", "ci_low_B", "ci_high_B", "shift", "intervals_overlap",
                    "same_weights"]
    evidence_cols = ["checkpoint", "evidence", "axis", "excess_A", "ci_low_A", "ci_high_A", "excess_B", "ci_low_B",
                     "ci_high_B", "shift", "intervals_overlap"]
    return Comparison(pd.DataFrame(_verdict_rows(a, b), columns=verdict_cols),
                      pd.DataFrame(_evidence_rows(a, b), columns=evidence_cols),
                      pd.DataFrame(runs, columns=["field", "A", "B", "same"]))


def where_differs(a, b, width: int = 40) -> tuple[str, str]:
    """Two long values cut to the part where they first differ (a verdict rule is a paragraph; its threshold is one
    number in it)."""
    sa, sb = str(a), str(b)
    if len(sa) <= 2 * width and len(sb) <= 2 * width:
        return sa, sb
    i = next((k for k, (x, y) in enumerate(zip(sa, sb)) if x != y), min(len(sa), len(sb)))
    lo = max(0, i - width)
    return tuple(("..." if lo else "") + t[lo:i + width] + ("..." if len(t) > i + width else "") for t in (sa, sb))


def write_comparison(comp: Comparison, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in (("compare_verdicts", comp.verdicts), ("compare_evidence", comp.evidence),
                     ("compare_runs", comp.runs)):
        paths.append(out / f"{name}.csv")
        df.to_csv(paths[-1], index=False)
    return paths
