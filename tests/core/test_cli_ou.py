"""CLI: --scorecard-definition, --export-ou and --import-eval on the tiny lab."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from unlearn_core.cli import main

pytestmark = pytest.mark.lab


def _args(lab, out, *extra):
    return ["audit", "--original", str(lab / "original"), "--unlearned", f"npo={lab / 'npo'}",
            "--retain-model", str(lab / "retain_only"), "--forget", str(lab / "data" / "forget.jsonl"),
            "--retain", str(lab / "data" / "retain.jsonl"), "--holdout", str(lab / "data" / "holdout.jsonl"),
            "--out", str(out), "--device", "cpu", "--analyses", "scorecard", *extra]


def test_export_then_import_through_the_cli(tiny_lab, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(tiny_lab, out, "--export-ou")) == 0
    summary = pd.read_csv(out / "scorecard_summary.csv")
    assert set(summary.definition) == {"open-unlearning"}
    npo_eval = out / "ou" / "npo" / "TOFU_EVAL.json"
    assert set(json.loads(npo_eval.read_text())) >= {"forget_Q_A_Prob", "forget_truth_ratio", "mia_min_k", "privleak"}
    ref_eval = out / "ou" / "retain_only" / "TOFU_EVAL.json"
    # a retain model's EVAL alone gives the others forget quality and PrivLeak; own numbers sit beside imported ones
    assert main(_args(tiny_lab, out, "--import-eval", f"npo={npo_eval}", "--import-eval",
                      f"retain_only={ref_eval}")) == 0
    cmp = pd.read_csv(out / "ou_import_npo.csv")
    matched = cmp.dropna(subset=["own", "imported"])
    assert len(matched) > 50 and (matched.difference.abs() < 1e-12).all()
    npo = summary.set_index("model").loc["npo"]
    fq = cmp[cmp.metric == "forget_quality (vs imported retain-model EVAL)"].imported.item()
    assert fq == pytest.approx(npo.forget_quality, abs=1e-12)
    pl = cmp[cmp.metric == "privleak (vs imported retain-model EVAL)"].imported.item()
    assert pl == pytest.approx(npo.privleak_mink, abs=1e-9)
    assert "import npo:" in capsys.readouterr().err


def test_own_definition_flag_and_bad_import_file(tiny_lab, tmp_path, capsys):
    out = tmp_path / "own"
    assert main(_args(tiny_lab, out, "--scorecard-definition", "own", "--leak-k", "2")) == 0
    assert set(pd.read_csv(out / "scorecard_items.csv").definition) == {"own"}
    summary = pd.read_csv(out / "scorecard_summary.csv").set_index("model")
    assert summary.forget_leak_at_k.between(0, 1).all() and summary.loc["original", "forget_leak_at_k"] > 0.5
    bad = tmp_path / "TOFU_EVAL.json"
    bad.write_text('{"forget_Q_A_Prob": {"agg_value": 0.5, "value_by_index": [1, 2]}}')
    capsys.readouterr()
    assert main(_args(tiny_lab, tmp_path / "bad", "--import-eval", f"npo={bad}")) == 2
    err = capsys.readouterr().err
    assert "forget_Q_A_Prob" in err and "value_by_index" in err and "Traceback" not in err
