"""The scale benchmark at its CI size: it must time every analysis it was asked for, from an empty store, and its
batched forward must give the one-at-a-time numbers, or the speed-up it reports would be a speed-up of a different
computation."""

from __future__ import annotations

import math

from benchmarks.scale import main
from unlearn_core.analyses.registry import DEFAULT_EVIDENCE_SET


def test_tiny_scale_bench(tmp_path):
    csv = tmp_path / "scale.csv"
    table = main(["--size", "tiny", "--device", "cpu", "--n-forget", "10", "--n-retain", "20", "--n-holdout", "10",
                  "--workdir", str(tmp_path / "work"), "--csv", str(csv), "--quiet"])
    analyses = table[table.part == "analysis"]
    assert list(analyses.step) == list(DEFAULT_EVIDENCE_SET)
    assert (analyses.seconds > 0).all() and (analyses.peak_mib > 0).all()
    assert analyses.note.str.startswith("dominant step: ").all()

    fwd = table[table.part == "forward"].set_index("step")
    for batched in ("batched score_encoded", "batched answer_logprob_sums"):
        assert fwd.loc[batched, "max_abs_diff"] < 1e-4
        ratio = fwd.loc[batched, "naive_over_this"]
        assert math.isfinite(ratio) and ratio > 0
    assert (fwd.tokens_per_s > 0).all()
    assert fwd.loc["floor (plain batched forward)", "of_floor"] == 1.0
    assert csv.read_text().count("\n") == len(table) + 1
