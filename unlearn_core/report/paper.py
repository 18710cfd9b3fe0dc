"""The verdict as a compact LaTeX table for a paper: five columns (booktabs), numbers with their intervals printed on
their true side of the rule's lines, and each checkpoint's reason as a footnote under the table.

Why: the generic table export of the verdict frame has 9+ columns and a long reason string in a cell, which does not
fit a paper column.
"""

from __future__ import annotations

import math
import string

from unlearn_core.evidence.numbers import fmt_rule, verdict_reading
from unlearn_core.report.export import latex_escape


def _math(text: str) -> str:
    """Escaped text with comparison signs in math mode (a bare > prints as an inverted question mark in OT1)."""
    out = latex_escape(text)
    for sign, tex in ((">=", "$\\geq$"), ("<=", "$\\leq$"), (" > ", " $>$ "), (" < ", " $<$ ")):
        out = out.replace(sign, tex)
    return out


def _label(key: str, labels: dict[str, str] | None) -> str:
    return (labels or {}).get(key, key.replace("_", " "))


def verdict_table_latex(verdict, caption: str = "Suppression vs deletion per checkpoint.",
                        label: str = "tab:verdict", evidence_labels: dict[str, str] | None = None) -> str:
    """booktabs table: checkpoint, verdict, looks forgotten, still inside (excess [95% CI]), deciding probe; the
    reason of each verdict is a lettered note below the table."""
    cfg = verdict.config
    lines = (cfg.suppressed_at, cfg.partial_at)
    rows, notes = [], []
    for i, v in enumerate(verdict.verdicts):
        mark = string.ascii_lowercase[i % 26]
        lf = "--" if math.isnan(v.looks_forgotten_score) else fmt_rule(v.looks_forgotten_score,
                                                                       (1 - cfg.forgotten_ratio,))
        if math.isnan(v.retention):
            inside = "--"
        else:
            inside = (f"${fmt_rule(v.retention, lines, signed=True)}$ "
                      f"[${fmt_rule(v.retention_lo, lines, signed=True)}$, "
                      f"${fmt_rule(v.retention_hi, lines, signed=True)}$]")
        probe = latex_escape(_label(v.retention_from, evidence_labels)) if v.retention_from else "--"
        rows.append(f"{latex_escape(v.model)} & {latex_escape(v.verdict)}$^{{\\mathrm{{{mark}}}}}$ & {lf} & "
                    f"{inside} & {probe} \\\\")
        reading = verdict_reading(v, cfg)
        notes.append(f"$^{{\\mathrm{{{mark}}}}}$\\,{_math(reading or v.reason)}"
                     + (f" (control: {latex_escape(v.control)})" if v.control else ""))
    pct = f"{cfg.ci:.0%}".replace("%", r"\%")
    rule = (f"Looks forgotten $= 1 - $ forget acc.\\ / original's; still inside $=$ excess recovery over the control "
            f"[{pct} bootstrap CI]. Suppressed if the largest lower bound $\\geq {cfg.suppressed_at:g}$, partially "
            f"if $\\geq {cfg.partial_at:g}$, deleted if every upper bound $< {cfg.suppressed_at:g}$.")
    body = "\n".join(rows)
    return (
        "\\begin{table}[t]\n\\centering\\small\n"
        f"\\caption{{{latex_escape(caption)}}}\\label{{{latex_escape(label)}}}\n"
        "\\begin{tabular}{llrll}\n\\toprule\n"
        "Checkpoint & Verdict & Looks forgotten & Still inside [CI] & Probe \\\\\n\\midrule\n"
        f"{body}\n\\bottomrule\n\\end{{tabular}}\n"
        f"\\par\\vspace{{2pt}}\\footnotesize {rule}\\\\\n" + "\\\\\n".join(notes) + "\n\\end{table}\n"
    )
