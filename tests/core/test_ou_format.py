"""open-unlearning result files: export then import gives identical numbers; hand-written files with NaN, missing
keys and wrong keys give a partial view or an error that names the key, never a crash."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unlearn_core.analyses.scorecard import ScorecardConfig, compute_scorecard
from unlearn_core.data.ou_format import (
    OUFormatError,
    compare_with_scorecard,
    load_ou,
    reference_scores,
    scorecard_to_ou_eval,
    write_ou,
)
from unlearn_core.run.workspace import lab_workspace


@pytest.fixture(scope="module")
def scored(tiny_lab):
    spec = lab_workspace(tiny_lab, unlearned=["ga"], device="cpu")
    return compute_scorecard(spec.load_models(), spec.load_data(), ScorecardConfig())


def test_export_then_import_gives_identical_numbers(scored, tmp_path):
    eval_path, summary_path = write_ou(scored, "ga", tmp_path)
    assert eval_path.name == "TOFU_EVAL.json" and summary_path.name == "TOFU_SUMMARY.json"
    ev = load_ou(eval_path)
    assert ev.kind == "eval" and ev.problems == []
    cmp = compare_with_scorecard(scored, "ga", ev)
    items = cmp[cmp.level == "item"]
    n = len(scored.items_frame().query("model == 'ga' and split == 'forget'"))
    assert len(items[items.metric == "forget_Q_A_Prob"]) == n == 20
    matched = cmp.dropna(subset=["own", "imported"])
    assert len(matched) > 100 and (matched.difference == 0).all()
    assert set(cmp.definition) == {"open-unlearning"}
    s = scored.scores("ga")
    assert ev.agg["privleak"] == s["privleak_mink"] and ev.agg["mia_min_k"] == s["mia_auc_mink"]
    mia = scored.mia_frame().query("model == 'ga' and metric == 'minkpp' and split == 'holdout'")
    np.testing.assert_array_equal([ev.mia["mia_min_k_plus_plus"]["holdout"][i] for i in mia.item], -mia.score)
    summary = load_ou(summary_path)
    assert summary.kind == "summary" and summary.agg["forget_Q_A_Prob"] == s["forget_p"]
    # generations travel with the ROUGE rows
    gen = ev.items[(ev.items.metric == "forget_Q_A_ROUGE")].sort_values("item").generation.tolist()
    assert gen == scored.items_frame().query("model == 'ga' and split == 'forget'").generated_answer.tolist()


def test_retain_model_eval_gives_forget_quality_and_privleak(scored):
    ga = load_ou(json.dumps(scorecard_to_ou_eval(scored, "ga")).encode(), "ga.json")
    ref = load_ou(json.dumps(scorecard_to_ou_eval(scored, "retain_only")).encode(), "retain.json")
    got = reference_scores(ga, ref)
    s = scored.scores("ga")
    assert got["forget_quality"] == pytest.approx(s["forget_quality"], abs=1e-12)
    assert got["privleak"] == pytest.approx(s["privleak_mink"], abs=1e-9) and got["privleak"] != 0


HAND_WRITTEN = """{
  "forget_Q_A_Prob": {"agg_value": NaN, "value_by_index": {
      "0": {"prob": 0.5, "avg_loss": 0.6931}, "1": {"prob": NaN, "avg_loss": NaN}, "2": null}},
  "forget_truth_ratio": {"value_by_index": {"0": {"score": 0.8}, "1": {"score": 1.25}}},
  "forget_Q_A_ROUGE": {"agg_value": 0.4},
  "forget_Q_A_PERT_Prob": {"agg_value": 0.1, "value_by_index": {"0": {"prob": [0.1, 0.3], "avg_loss": [2.3, 1.2]}}},
  "mia_min_k": {"forget": {"agg_value": 2.0, "value_by_index": {"0": {"score": 1.5}, "1": {"score": 2.5}}},
                "holdout": {"agg_value": 3.0, "value_by_index": {"0": {"score": 3.0}}}, "auc": 0.75, "agg_value": 0.75},
  "privleak": {"agg_value": -12.5}
}"""


def test_hand_written_eval_with_nan_and_missing_keys_is_a_partial_view(scored):
    ev = load_ou(HAND_WRITTEN.encode(), "TOFU_EVAL.json")
    assert ev.kind == "eval"
    assert math.isnan(ev.agg["forget_Q_A_Prob"]) and ev.agg["privleak"] == -12.5 and ev.agg["mia_min_k"] == 0.75
    p = ev.item_values("forget_Q_A_Prob")
    assert p[0] == 0.5 and math.isnan(p[1]) and 2 not in p  # a null row is skipped, NaN kept
    assert ev.item_values("forget_truth_ratio") == {0: 0.8, 1: 1.25}
    assert ev.mia["mia_min_k"]["forget"] == {0: 1.5, 1: 2.5}
    joined = "\n".join(ev.problems)
    assert "['forget_truth_ratio']: no 'agg_value'" in joined
    assert "['forget_Q_A_ROUGE']: no 'value_by_index'" in joined
    cmp = compare_with_scorecard(scored, "ga", ev)
    row = cmp[(cmp.level == "item") & (cmp.metric == "forget_Q_A_Prob") & (cmp["item"] == 0)].iloc[0]
    own_p = scored.items_frame().query("model == 'ga' and split == 'forget' and item == 0").p.item()
    assert row.own == own_p and row.difference == pytest.approx(0.5 - own_p)
    alone = compare_with_scorecard(scored, None, ev)  # a checkpoint not in the workspace: imported numbers alone
    assert alone.own.isna().all() and alone.imported.notna().any()


@pytest.mark.parametrize("text, names", [
    ('{"forget_Q_A_Prob": {"agg_value": 0.5, "value_by_index": [0.1, 0.2]}}', ["forget_Q_A_Prob", "value_by_index"]),
    ('{"forget_Q_A_Prob": {"agg_value": 0.5, "value_by_index": {"0": {"prob": "high"}}}}', ["'0'", "'prob'"]),
    ('{"forget_Q_A_Prob": {"agg_value": "0.5"}}', ["forget_Q_A_Prob", "agg_value"]),
    ('{"forget_Q_A_Prob": {"agg_value": 0.5, "value_by_index": {"first": {"prob": 0.1}}}}', ["'first'"]),
    ('{"mia_min_k": {"forget": [1, 2], "holdout": {}}}', ["mia_min_k", "'forget'"]),
    ('{"forget_Q_A_Prob": 0.5, "privleak": {"agg_value": 1}}', ["privleak"]),
    ('[1, 2]', ["top level"]),
    ('{"forget_Q_A_Prob": ', ["not JSON"]),
    ('{}', ["no metrics"]),
])
def test_bad_files_name_the_wrong_key(text, names):
    with pytest.raises(OUFormatError) as err:
        load_ou(text.encode(), "bad.json")
    msg = str(err.value)
    assert msg.startswith("bad.json")
    for n in names:
        assert n in msg, msg


def test_unreadable_path_is_a_format_error(tmp_path):
    with pytest.raises(OUFormatError, match="cannot read"):
        load_ou(tmp_path / "missing.json")


def test_muse_eval_knowmem_rouge_is_read_per_item(scored):
    muse = {"forget_knowmem_ROUGE": {"agg_value": 0.25, "value_by_index": {
                "0": {"rougeL_recall": 0.5, "generation": "Brinhollow", "ground_truth": "Brinhollow"},
                "1": {"rougeL_recall": 0.0, "generation": "no idea"}}},
            "forget_verbmem_ROUGE": {"agg_value": 0.1, "value_by_index": {"0": {"rougeL_f1": 0.1}}},
            "privleak": {"agg_value": 3.5}}
    ev = load_ou(json.dumps(muse).encode(), "MUSE_EVAL.json")
    assert ev.item_values("forget_knowmem_ROUGE") == {0: 0.5, 1: 0.0}
    cmp = compare_with_scorecard(scored, "ga", ev)
    row = cmp[(cmp.metric == "forget_knowmem_ROUGE") & (cmp.level == "item") & (cmp["item"] == 0)].iloc[0]
    own = scored.items_frame().query("model == 'ga' and split == 'forget' and item == 0").rougeL_recall.item()
    assert row.own_column == "forget.rougeL_recall" and row.own == own and row.imported == 0.5
    agg = cmp[(cmp.level == "aggregate")].set_index("metric")
    assert agg.loc["forget_knowmem_ROUGE", "own"] == scored.scores("ga")["forget_rougeL"]
    assert math.isnan(agg.loc["forget_verbmem_ROUGE", "own"])  # no twin in the scorecard: imported alone
    assert "forget_knowmem_ROUGE" not in scorecard_to_ou_eval(scored, "ga")  # the export speaks TOFU
