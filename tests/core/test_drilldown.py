"""Per-item drill-down on the tiny lab: behaviour and per-item probe recovery side by side, and its filters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearn_core.analyses.scorecard import ScorecardConfig, compute_scorecard
from unlearn_core.evidence.recovery import recovery_rate
from unlearn_core.report.drilldown import REC_PREFIX, filter_drilldown, item_drilldown
from unlearn_core.run.audit import get_analysis, run_analysis
from unlearn_core.run.workspace import lab_workspace

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tiny_lab):
    spec = lab_workspace(tiny_lab, unlearned=["suppressed_head", "ga"], device="cpu")
    models, data = spec.load_models(), spec.load_data()
    sc = compute_scorecard(models, data, ScorecardConfig(max_new_tokens=16))
    patching, _ = run_analysis(get_analysis("patching"), models, data, None)
    return models, data, sc, patching


def test_one_row_per_item_and_checkpoint_with_probe_recovery(lab):
    models, data, sc, patching = lab
    df, skipped = item_drilldown(sc, [("patching", patching)])
    assert skipped == {}
    assert len(df) == len(data.forget) * len(models.all())
    assert list(df.checkpoint[:4]) == list(models.all())  # item 0 across every checkpoint, in workspace order
    col = REC_PREFIX + "patching_retention"
    items = patching.evidence_items()["patching_retention"]
    orig = items.original_scores("original")
    sup = df[df.checkpoint == "suppressed_head"].set_index("item")
    for i in range(len(data.forget)):
        want = recovery_rate(float(items.forget_attacked["suppressed_head"][i]),
                             float(items.forget_plain["suppressed_head"][i]), float(orig[i]))
        got = sup.loc[i, col]
        assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want)
    assert df[df.checkpoint == "original"][col].isna().all()
    # the planted head-only suppression forgets behaviourally and patching brings items back
    assert sup.forgot_behaviourally.sum() >= len(data.forget) // 2
    assert sup.forgot_but_recovered.sum() >= 1
    assert (sup[sup.forgot_but_recovered].recovered_by == "patching_retention").all()
    # generations and the scorecard numbers are the scorecard's own
    items_sc = sc.items_frame().query("model == 'ga' and split == 'forget'").set_index("item")
    ga = df[df.checkpoint == "ga"].set_index("item")
    np.testing.assert_array_equal(ga.p, items_sc.p)
    assert (ga.generated_answer == items_sc.generated_answer).all()


def test_filters_and_sort(lab):
    _, data, sc, patching = lab
    df, _ = item_drilldown(sc, [("patching", patching)])
    view = filter_drilldown(df, forgot_but_recovered=True)
    assert len(view) > 0 and view.forgot_behaviourally.all() and (view.max_recovery >= 0.5).all()
    assert "original" not in set(view.checkpoint)
    word = data.forget[0].question.split()[-1].strip("?").lower()
    hits = filter_drilldown(df, text=word.upper())
    # the search reads the question, the gold answer and the generation (a damaged model may generate the word)
    hay = (hits.question + " " + hits.gold_answer.fillna("") + " " + hits.generated_answer.fillna("")).str.lower()
    assert 0 < len(hits) < len(df) and hay.str.contains(word).all()
    assert hits.question.str.lower().str.contains(word).mean() > 0.5
    s = filter_drilldown(df, checkpoints=["ga"], sort_by="p", ascending=False)
    assert set(s.checkpoint) == {"ga"} and s.p.is_monotonic_decreasing
    strict, _ = item_drilldown(sc, [("patching", patching)], recover_at=1.0)
    assert strict.forgot_but_recovered.sum() <= df.forgot_but_recovered.sum()
    with pytest.raises(ValueError, match="no such column"):
        filter_drilldown(df, sort_by="nope")
    # without probe results the behaviour half still stands alone
    alone, _ = item_drilldown(sc)
    assert not any(c.startswith(REC_PREFIX) for c in alone.columns) and not alone.forgot_but_recovered.any()
