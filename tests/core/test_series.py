"""Checkpoint series: a real gradient-ascent run from the tiny lab's original saved every 4 steps as checkpoint-N/
(full models) and a LoRA run saved the same way (adapters); audited step by step, stored steps never recomputed."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tests.fixtures.checkpoints import train_full_ga_series, train_lora_ga
from unlearn_core.checkpoints.series_layout import expand_series, list_steps, pick_steps
from unlearn_core.checkpoints.source import CheckpointError
from unlearn_core.evidence.verdict import VerdictConfig
from unlearn_core.run.series import SERIES_COLUMNS, SeriesAuditor
from unlearn_core.run.workspace import lab_workspace
from unlearn_core.store.results import ResultsStore

pytestmark = pytest.mark.lab
ANALYSES = ["scorecard", "decodability"]


@pytest.fixture(scope="module")
def ga_series(tiny_lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("series") / "ga_run"
    recorded = train_full_ga_series(tiny_lab, out, steps=24, every=4, lr=1e-4)
    return out, recorded


def test_steps_sorted_numerically_and_picked(tmp_path):
    for name in ("checkpoint-10", "checkpoint-2", "checkpoint-1", "checkpoint-x", "runs"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-3").write_text("a file, not a step")
    assert [s for s, _ in list_steps(tmp_path)] == [1, 2, 10]
    steps = [4, 8, 12, 16, 20, 24]
    assert pick_steps(steps) == steps
    assert pick_steps(steps, 2) == [4, 12, 20, 24]  # the last step always
    assert pick_steps(steps, 3) == [4, 16, 24]
    assert pick_steps(steps, 10) == [4, 24]
    assert pick_steps([24, 4, 12], 1) == [4, 12, 24]
    with pytest.raises(ValueError, match=">= 1"):
        pick_steps(steps, 0)
    with pytest.raises(CheckpointError, match="no checkpoint-N subfolders"):
        list_steps(tmp_path / "runs")
    with pytest.raises(ValueError, match="without '@'"):
        expand_series("a@b", tmp_path)


def test_series_names_each_step(ga_series):
    out, _ = ga_series
    steps = expand_series("ga", out, every=2)
    assert [s.name for s in steps] == ["ga@4", "ga@12", "ga@20", "ga@24"]
    assert steps[0].path.endswith("checkpoint-4")


def _auditor(tiny_lab, store):
    spec = lab_workspace(tiny_lab, device="cpu")
    return SeriesAuditor(spec, spec.load_data(), ANALYSES, store)


def test_series_audit_matches_the_run_and_adding_steps_computes_only_them(ga_series, tiny_lab, tmp_path,
                                                                            monkeypatch):
    out, recorded = ga_series
    store = ResultsStore(tmp_path / "store.sqlite")
    first = _auditor(tiny_lab, store).audit(expand_series("ga", out, every=2))
    n_first = len(store)
    assert list(first.columns) == SERIES_COLUMNS
    assert list(first["step"]) == [4, 12, 20, 24] and not first["from_store"].any()
    assert n_first == len(ANALYSES) * 4  # one stored result per analysis and step: each step is its own set

    # adding steps (every step now) computes only the two new ones
    full = _auditor(tiny_lab, store).audit(expand_series("ga", out))
    assert list(full["step"]) == [4, 8, 12, 16, 20, 24]
    assert dict(zip(full["step"], full["from_store"])) == {4: True, 8: False, 12: True, 16: False, 20: True,
                                                           24: True}
    assert len(store) == n_first + len(ANALYSES) * 2
    # every per-step number is the same; the series-level reading (first step that looks forgotten, and the reading
    # that quotes it) depends on which steps were audited: with every step it can only come earlier
    per_step = ["from_store", "seconds", "first_looks_forgotten", "reading"]
    pd.testing.assert_frame_equal(full[full.step.isin([4, 12, 20, 24])].drop(columns=per_step).reset_index(drop=True),
                                  first.drop(columns=per_step).reset_index(drop=True))
    assert full["first_looks_forgotten"].iloc[0] <= first["first_looks_forgotten"].iloc[0]

    # forget accuracy over steps is what the training run recorded, and it falls
    for r in full.itertuples():
        assert r.forget_acc == pytest.approx(recorded[r.step], abs=1e-6), r.step
    assert full["forget_acc"].is_monotonic_decreasing and full["forget_acc"].iloc[-1] < 0.5 * recorded[0]
    assert (full["original_forget_acc"] == recorded[0]).all()

    # the first step that looks forgotten: the first with forget acc <= 0.5 x the original's
    first_step = min(s for s, a in recorded.items() if s and a <= 0.5 * recorded[0])
    assert (full["first_looks_forgotten"] == first_step).all()
    assert (full.loc[full.step < first_step, "verdict"] == "not forgotten").all()
    assert (full.loc[full.step >= first_step, "behaviour"] == "looks forgotten").all()
    # retention with its interval, calibrated against the retain-only reference
    # (a step with no counted evidence, still answering, has none: NaN)
    rated = full.dropna(subset=["retention"])
    assert len(rated) >= len(full) - 1
    assert (rated["retention_lo"] <= rated["retention"]).all() and (rated["retention"] <= rated["retention_hi"]).all()
    assert set(rated["control"]) == {"retain-only reference"}
    # the reading of the whole run follows from the rows after the first forgotten step: any lower bound above the
    # line is suppression, every upper bound below it deletion
    after = full[full.step >= first_step]
    line = VerdictConfig().suppressed_at
    expect = ("suppression: retention stays while behaviour falls" if (after.retention_lo >= line).any() else
              "deletion: retention falls with behaviour" if (after.retention_hi < line).all() else "inconclusive")
    assert (full["reading"] == expect).all(), full[["step", "retention_lo", "retention_hi", "reading"]]

    # re-opening a stored series loads no step model at all
    import unlearn_core.run.series as series

    def refuse(*a, **k):
        raise AssertionError("a stored step was loaded")

    monkeypatch.setattr(series, "load_model", refuse)
    again = _auditor(tiny_lab, store).audit(expand_series("ga", out))
    assert again["from_store"].all() and len(store) == n_first + len(ANALYSES) * 2
    assert list(again["verdict"]) == list(full["verdict"])


def test_adapter_series_audits_each_step_merged(tiny_lab, tmp_path):
    run = tmp_path / "lora_run"
    recorded = train_lora_ga(tiny_lab, run, steps=9, lr=2e-3, save_every=3)
    assert sorted(recorded) == [3, 6, 9]
    spec = lab_workspace(tiny_lab, device="cpu")
    store = ResultsStore(tmp_path / "store.sqlite")
    df = SeriesAuditor(spec, spec.load_data(), ["scorecard"], store).audit(expand_series("lora", run))
    assert list(df["checkpoint"]) == ["lora@3", "lora@6", "lora@9"]
    for r in df.itertuples():
        assert r.forget_acc == pytest.approx(recorded[r.step], abs=1e-6), r.step
        assert math.isnan(r.retention)  # the scorecard alone gives no retention evidence
        assert r.verdict in ("not forgotten", "unknown")


def test_cli_series_writes_the_table(ga_series, tiny_lab, tmp_path, capsys):
    import json

    from unlearn_core.cli import main

    out, recorded = ga_series
    res = tmp_path / "out"
    args = ["audit", "--original", str(tiny_lab / "original"), "--retain-model", str(tiny_lab / "retain_only"),
            "--series", f"ga={out}", "--series-every", "3", "--forget", str(tiny_lab / "data" / "forget.jsonl"),
            "--retain", str(tiny_lab / "data" / "retain.jsonl"), "--holdout", str(tiny_lab / "data" / "holdout.jsonl"),
            "--out", str(res), "--analyses", ",".join(ANALYSES), "--device", "cpu"]
    assert main(args) == 0
    text = capsys.readouterr().out
    df = pd.read_csv(res / "series.csv")
    assert list(df["checkpoint"]) == ["ga@4", "ga@16", "ga@24"]
    assert list(df["forget_acc"]) == pytest.approx([recorded[4], recorded[16], recorded[24]])
    first = min(s for s in (4, 16, 24) if recorded[s] <= 0.5 * recorded[0])
    assert f"ga: first looks forgotten at step {first}" in text and "0 of 3 steps from the store" in text
    assert (res / "data_check.csv").exists() and not (res / "report.json").exists()
    # with an explicit checkpoint beside the series: the usual report for it, the series table for the run
    assert main(args[:-4] + ["--unlearned", f"npo={tiny_lab / 'npo'}", "--analyses", ",".join(ANALYSES),
                             "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "3 of 3 steps from the store" in text
    assert set(json.loads((res / "report.json").read_text())["checkpoints"]) == {"original", "npo", "retain_only"}
    assert main(args[:-4] + ["--series", f"bad={tmp_path}", "--device", "cpu"]) == 2
    assert "no checkpoint-N subfolders" in capsys.readouterr().err


def test_trainer_checkpoint_without_tokenizer_uses_the_originals(ga_series, tiny_lab, tmp_path):
    """Trainer checkpoint-N/ folders often hold weights only: the original's tokenizer is used (and compared)."""
    import shutil

    from unlearn_core.checkpoints.inspect import inspect_checkpoint
    from unlearn_core.checkpoints.load import load_model
    from unlearn_core.checkpoints.memory import pick_device

    out, _ = ga_series
    bare = tmp_path / "run" / "checkpoint-4"
    shutil.copytree(out / "checkpoint-4", bare)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (bare / f).unlink()
    # (transformers alone would build an empty 1-token tokenizer from such a folder)
    info = inspect_checkpoint(bare, original=tiny_lab / "original")
    assert info.tokenizer_path == str(tiny_lab / "original")
    assert info.vocab == inspect_checkpoint(tiny_lab / "original").vocab
    assert inspect_checkpoint(out / "checkpoint-4", original=tiny_lab / "original").tokenizer_path is None
    device, dtype = pick_device("cpu")
    loaded = load_model(info, "ga@4", "unlearned", device, dtype)
    assert loaded.tokenizer.get_vocab() == info.vocab
    spec = lab_workspace(tiny_lab, device="cpu")
    from dataclasses import replace

    assert "ga@4" in replace(spec, unlearned=(("ga@4", str(bare)),)).inspect()  # compatible with the original
    # a series folder given as one checkpoint says what it is
    with pytest.raises(CheckpointError, match="a series of checkpoint-N/ folders.*--series"):
        inspect_checkpoint(tmp_path / "run", original=tiny_lab / "original")
