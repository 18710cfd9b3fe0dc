"""Each probe page's one line (what it can and cannot tell, whether it uses the original), and the relearning curve's
peak/area beside the reference's curve."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from unlearn_core.analyses import registry
from unlearn_core.analyses.relearning.plots import plot_relearning, relearning_curve_stats
from unlearn_core.viz.charts import human_label


def scope_line(name: str) -> str:
    return registry.get_spec(name).scope_line()


def test_every_probe_states_its_scope_and_which_use_the_original():
    for name in registry.names():
        if name == "scorecard":
            continue
        assert "Can tell:" in scope_line(name) and "Cannot tell:" in scope_line(name), name
    for name in ("extraction", "patching", "sae_restoration"):
        assert "Uses the original's" in scope_line(name), name
    for name in ("decodability", "relearning", "quantization", "perturbation"):
        assert "Self-contained" in scope_line(name), name
    assert "logits" in scope_line("extraction") and "retrained" in scope_line("extraction")


def test_evidence_that_reads_the_original_sits_on_the_edit_axis():
    """The axis follows from what the attack reads: every probe that uses the original's states, logits or weights
    is on the edit-of-original axis, every self-contained one on the recoverable axis."""
    for name in registry.names():
        spec = registry.get_spec(name)
        for ev in spec.evidence:
            reads_original = bool(spec.scope and spec.scope.uses_original)
            assert (ev.axis == "edit_of_original") == reads_original, (name, ev.axis, spec.scope)


def _curve():
    rows = []
    for step, (ga, ro) in enumerate([(0.0, 0.0), (0.2, 0.3), (0.6, 0.3), (0.8, 0.1)]):
        rows += [{"model": "ga", "role": "unlearned", "step": step * 2, "held_acc": ga},
                 {"model": "retain_only", "role": "retain_only", "step": step * 2, "held_acc": ro}]
    df = pd.DataFrame(rows)
    return SimpleNamespace(curve_frame=lambda: df)


def test_relearning_reports_the_whole_curve_and_the_reference_beside_it():
    res = _curve()
    stats = relearning_curve_stats(res).set_index("model")
    # the reference climbs to 0.3 mid-run though it ends at 0.1: peak and area show it, the last step does not
    assert stats.loc["retain_only", "peak"] == 0.3 and stats.loc["retain_only", "peak_step"] == 2
    assert stats.loc["retain_only", "last"] == pytest.approx(0.1)
    # trapezoid area per step: ga (0, .2, .6, .8) over steps 0..6 -> (0.1 + 0.4 + 0.7) * 2 / 6 = 0.4
    assert stats.loc["ga", "area_per_step"] == pytest.approx(0.4)
    fig = plot_relearning(res)
    ref = [t for t in fig.data if t.name and t.name.startswith("retain_only")]
    assert ref and ref[0].line.dash == "dash" and "peak 0.30 @ step 2" in ref[0].name
    assert any(t.marker.symbol == "star" for t in fig.data)  # peaks marked


def test_human_labels():
    assert human_label("sigma0.1") == "noise σ = 0.1"
    assert human_label("blocks [2]") == "block 2" and human_label("blocks [1, 3]") == "blocks 1, 3"
    assert human_label("8bit") == "8-bit" and human_label("ga") == "ga"
