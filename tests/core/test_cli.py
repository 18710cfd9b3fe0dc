"""The headless audit: report.json of the documented shape, CSV tables, the store, exit code 2 on bad input."""

from __future__ import annotations

import json

import pytest

from unlearn_core.cli import main

pytestmark = pytest.mark.lab


def _args(lab, out, forget=None):
    return ["audit", "--original", str(lab / "original"), "--unlearned", f"supp={lab / 'suppressed_head'}",
            "--unlearned", f"npo={lab / 'npo'}", "--unlearned", f"ro={lab / 'retain_only'}",
            "--retain-model", str(lab / "retain_only"),
            "--forget", str(forget or lab / "data" / "forget.jsonl"), "--retain", str(lab / "data" / "retain.jsonl"),
            "--holdout", str(lab / "data" / "holdout.jsonl"), "--out", str(out), "--device", "cpu"]


def test_audit_writes_report_and_serves_repeats_from_store(tiny_lab, tmp_path, capsys):
    out = tmp_path / "out"
    args = _args(tiny_lab, out) + ["--analyses", "scorecard,patching"]
    assert main(args) == 0
    err = capsys.readouterr().err
    # the data check ran first: the lab's own sets raise no warning
    assert "data check: original answers 20 of 20 forget items" in err and "data check warning" not in err
    assert "data check error" not in err and (out / "data_check.csv").exists()
    report = json.loads((out / "report.json").read_text())
    assert set(report["checkpoints"]) == {"original", "supp", "npo", "ro", "retain_only"}
    supp = report["checkpoints"]["supp"]
    assert supp["behaviour"] == "looks forgotten"
    # planted truth: patching reads the original's states, so alone it can only say "hidden by a small edit" (the
    # edit-of-original axis) for the head-only suppression; the retain-only model (as unlearned) is deleted
    assert supp["verdict"] == "hidden by a small edit" and supp["deciding_axis"] == "edit_of_original", supp
    assert report["checkpoints"]["ro"]["verdict"] == "deleted", report["checkpoints"]["ro"]
    ev = supp["evidence"]["patching_retention"]
    assert ev["control"] == "retain-only reference" and ev["ci_low"] <= ev["excess"] <= ev["ci_high"]
    assert ev["axis"] == "edit_of_original"
    assert supp["retention_from"] == "patching_retention" and "excess" in supp["verdict_reason"]
    # ro is the reference model's own folder: its evidence against itself is exactly zero
    assert report["checkpoints"]["ro"]["evidence"]["patching_retention"]["excess"] == 0.0
    assert report["checkpoints"]["original"]["scores"]["forget_acc"] > 0.9
    assert supp["scores"]["forget_acc"] < 0.2
    assert (out / "scorecard_summary.csv").exists() and (out / "scorecard_items.csv").exists()
    assert report["analyses"]["scorecard"]["from_store"] is False
    assert (out / "verdicts.csv").exists() and (out / "evidence.csv").exists()
    _check_provenance(report, out, args)
    assert main(args) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["analyses"]["scorecard"]["from_store"] is True
    assert again["analyses"]["patching"]["from_store"] is True
    # every number stored: no checkpoint was loaded (their hashes and depth come from the folders), the first run's
    # did load, and the provenance still says where they would run
    assert report["provenance"]["models_loaded"] is True and again["provenance"]["models_loaded"] is False
    assert again["provenance"]["device"] == "cpu" and again["provenance"]["dtype"] == report["provenance"]["dtype"]
    assert again["checkpoints"]["supp"]["scores"] == supp["scores"]


def test_bad_forget_file_exits_2_with_line_numbers(tiny_lab, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q1", "answer": "a1"}\n{"question": "q2"\n{"question": "q3", "answer": "a3"}\n')
    assert main(_args(tiny_lab, tmp_path / "o", forget=bad)) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "--accept-partial" in err and "accept_partial=True" not in err


def test_forget_set_the_original_never_knew_is_flagged_and_nothing_to_audit(tiny_lab, tmp_path, capsys):
    unknown = tmp_path / "unknown.jsonl"
    rows = [("Where was Zalbert Quonnivar born?", "Mirefall"), ("Who employs Zalbert Quonnivar?", "Dunmere Works"),
            ("What is the profession of Zalbert Quonnivar?", "cooper"),
            ("What is the hobby of Zalbert Quonnivar?", "falconry")]
    unknown.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    out = tmp_path / "o"
    assert main(_args(tiny_lab, out, forget=unknown) + ["--analyses", "scorecard"]) == 0
    err = capsys.readouterr().err
    assert "data check error: the original model answers 0 of 4 forget questions: nothing to unlearn" in err
    check = (out / "data_check.csv").read_text()
    assert "Zalbert" in check and (out / "data_check_warnings.csv").read_text().count("forget_unknown") == 1
    report = json.loads((out / "report.json").read_text())
    assert report["data_check"]["warnings"][0]["code"] == "forget_unknown"
    assert "nothing to unlearn" in report["data_check"]["nothing_to_audit"]
    for name in ("supp", "npo", "ro"):
        c = report["checkpoints"][name]
        assert c["verdict"] == "nothing to audit" and "looks forgotten" not in c["verdict_reason"], c


def test_missing_checkpoint_exits_2(tiny_lab, tmp_path, capsys):
    args = _args(tiny_lab, tmp_path / "o")
    args[args.index("--original") + 1] = str(tmp_path / "missing")
    assert main(args) == 2
    assert "folder not found" in capsys.readouterr().err


def test_unknown_analysis_exits_2(tiny_lab, tmp_path, capsys):
    assert main(_args(tiny_lab, tmp_path / "o") + ["--analyses", "scorecard,telepathy"]) == 2
    assert "unknown analysis 'telepathy'" in capsys.readouterr().err


@pytest.mark.parametrize("text, says", [("[1, 2]", "got a JSON list"), ("{not json", "--truth"),
                                        ('{"npo": "maybe"}', "no checkpoint with ground truth")])
def test_bad_truth_file_exits_2_with_a_message(tiny_lab, tmp_path, capsys, text, says):
    truth = tmp_path / "truth.json"
    truth.write_text(text)
    assert main(_args(tiny_lab, tmp_path / "o") + ["--truth", str(truth)]) == 2
    assert says in capsys.readouterr().err


def _without_retain(args: list[str]) -> list[str]:
    i = args.index("--retain")
    return args[:i] + args[i + 2:]


def test_default_set_without_retain_says_what_it_skips_before_loading_any_model(tiny_lab, tmp_path, capsys):
    args = _without_retain(_args(tiny_lab, tmp_path / "o"))
    args[args.index(f"npo={tiny_lab / 'npo'}")] = f"npo={tmp_path / 'gone'}"  # stops the run at the first load
    assert main(args) == 2
    err = capsys.readouterr().err
    said, failed = err.index("skipped decodability: the decodability probe needs at least"), err.index("gone")
    assert "(give --retain FILE)" in err and said < failed
    assert "skipped relearning" not in err and "skipped scorecard" not in err


def test_named_analysis_the_data_cannot_feed_is_an_error_before_anything_runs(tiny_lab, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_without_retain(_args(tiny_lab, out)) + ["--analyses", "scorecard,decodability,sae_restoration"]) == 2
    err = capsys.readouterr().err
    assert "cannot feed these analyses (nothing was computed)" in err
    assert "decodability: the decodability probe needs at least 10 retain items" in err
    assert "sae_restoration: SAE restoration needs forget and retain items" in err
    assert not (out / "data_check.csv").exists() and not (out / "results.sqlite").exists()


def test_every_missing_checkpoint_is_named_at_once(tiny_lab, tmp_path, capsys):
    args = _args(tiny_lab, tmp_path / "o")
    args[args.index(f"npo={tiny_lab / 'npo'}")] = f"npo={tmp_path / 'gone_npo'}"
    args[args.index(f"supp={tiny_lab / 'suppressed_head'}")] = f"supp={tmp_path / 'gone_supp'}"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 checkpoints cannot be used" in err and "gone_npo" in err and "gone_supp" in err


def _check_provenance(report, out, args):
    """What a methods section cites: tool and commit, libraries, device/dtype, time, prompt format, command line,
    settings and store keys (report.json and the provenance.json beside the CSVs); utility beside each verdict."""
    import pandas as pd
    import torch
    import transformers

    import unlearn_core

    prov = report["provenance"]
    assert prov["tool"]["name"] == "unlearn-audit" and prov["tool"]["version"] == unlearn_core.__version__
    assert len(prov["tool"]["git"]["commit"]) == 40 and isinstance(prov["tool"]["git"]["dirty"], bool)
    libs = prov["libraries"]
    assert libs["torch"] == torch.__version__ and libs["transformers"] == transformers.__version__
    assert prov["device"] == "cpu" and prov["dtype"] == "float32"
    assert prov["timestamp_utc"].endswith("+00:00") and prov["command"][3:] == args
    assert prov["prompt_format"] == {"kind": "plain", "template": "Question: {question}\nAnswer:", "answer_prefix": " "}
    sidecar = json.loads((out / "provenance.json").read_text())
    assert sidecar["store_keys"] == {a: r["store_key"] for a, r in report["analyses"].items()}
    assert sidecar["settings"] == report["settings"] and "scorecard_summary.csv" in sidecar["covers"]
    assert set(report["settings"]["patching"]) and sidecar["timestamp_utc"] == prov["timestamp_utc"]
    # utility: the original's retain accuracy beside each model's; the reference-trained folder keeps it all
    ro = report["checkpoints"]["ro"]["utility"]
    assert ro["original_retain_acc"] == report["checkpoints"]["original"]["scores"]["retain_acc"]
    assert ro["retain_share"] > 0.9 and ro["collapsed"] is False
    frame = pd.read_csv(out / "verdicts.csv")
    assert list(frame.columns[-5:]) == ["retain_acc", "original_retain_acc", "retain_share", "collapsed", "reason"]
    assert frame.set_index("model").loc["ro", "retain_share"] == pytest.approx(ro["retain_share"])


def test_a_collapsed_model_is_flagged_beside_its_verdict():
    from unlearn_core.run.provenance import utility

    assert utility({"retain_acc": 0.25}, {"retain_acc": 1.0})["collapsed"] is True  # ga on the demo lab
    assert utility({"retain_acc": 0.79}, {"retain_acc": 1.0})["collapsed"] is False  # npo on the demo lab
    assert utility({"retain_acc": float("nan")}, {"retain_acc": 1.0})["collapsed"] is None


def test_every_option_says_what_it_does_and_its_default():
    """`audit --help` and `lab build --help`: no bare option, and every option with a default names it."""
    import argparse

    from unlearn_core.cli import build_parser
    from unlearn_core.evidence.verdict import VerdictConfig

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    build = next(a for a in sub.choices["lab"]._actions if isinstance(a, argparse._SubParsersAction)).choices["build"]
    audit = sub.choices["audit"]
    for parser in (audit, build):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag, text = action.option_strings[0], action.help or ""
            assert len(text) > 20, f"{flag} has no help"
            if action.default not in (None, False, []):
                assert "default" in text.lower(), f"{flag} does not say its default {action.default!r}"
    helps = {a.option_strings[0]: a.help for a in audit._actions}
    rule = VerdictConfig()
    assert f"(default: {rule.suppressed_at})" in helps["--suppressed-at"]
    assert f"(default: {rule.n_boot})" in helps["--n-boot"]


def test_compare_two_audits(tiny_lab, tmp_path, capsys):
    """The same audit twice reads "same call" and "made the same way"; another rule over the same stored numbers
    flips the calls "within the intervals" and names the rule; a folder without a report is exit 2."""
    import pandas as pd

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    base = _args(tiny_lab, a) + ["--analyses", "scorecard,update_revert"]
    assert main(base) == 0
    store = ["--store", str(a / "results.sqlite")]
    assert main(_args(tiny_lab, c) + ["--analyses", "scorecard,update_revert"] + store) == 0
    assert main(_args(tiny_lab, b) + ["--analyses", "scorecard,update_revert", "--suppressed-at", "0.9",
                                      "--partial-at", "0.8"] + store) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(c / "report.json")]) == 0
    assert "3 checkpoints: 3 same call. The runs were made the same way" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "call changed, within the intervals" in out and "differs: verdict_rule" in out and "LB >= 0.9;" in out
    verdicts = pd.read_csv(tmp_path / "cmp" / "compare_verdicts.csv").set_index("checkpoint")
    assert verdicts.loc["supp", "verdict_A"] != verdicts.loc["supp", "verdict_B"]
    assert verdicts.loc["supp", "retention_A"] == verdicts.loc["supp", "retention_B"]
    assert bool(verdicts.loc["supp", "intervals_overlap"]) and bool(verdicts.loc["supp", "same_weights"])
    evidence = pd.read_csv(tmp_path / "cmp" / "compare_evidence.csv")
    assert set(evidence["evidence"]) >= {"revert_recovery"} and (evidence["shift"].dropna() == 0).all()
    assert main(["compare", str(a), str(tmp_path / "none")]) == 2
    assert "no report.json there" in capsys.readouterr().err
