"""The compact LaTeX verdict table: booktabs, five columns, intervals, reasons as notes, numbers on their side."""

from __future__ import annotations

import re

from tests.core.test_verdict import _verdict
from unlearn_core.report.paper import verdict_table_latex


def test_verdict_table_is_compact_booktabs_with_intervals_and_notes():
    res = _verdict()
    tex = verdict_table_latex(res, evidence_labels={"probe": "synthetic probe"})
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\begin{tabular}{llrll}" in tex  # five columns, not one per frame column
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0].strip().splitlines()
    assert len(body) == len(res.verdicts)
    for line, v in zip(body, res.verdicts, strict=True):
        assert line.count("&") == 4 and line.startswith(v.model)
        if v.verdict in ("suppressed", "deleted", "partially suppressed"):
            assert re.search(r"\[\$[+-]\d\.\d+\$, \$[+-]\d\.\d+\$\]", line), line  # the interval is printed
    # the reasons are notes under the table, one per row, never a cell
    notes = tex.split("\\end{tabular}")[1]
    assert notes.count("^{\\mathrm{") == len(res.verdicts) and "largest lo" in notes
    assert ">=" not in tex and "$\\geq$" in notes  # comparison signs typeset in math mode
    assert "synthetic probe" in tex and "%" not in tex.replace("\\%", "")
