"""`audit --engine ray`: the analyses as Ray tasks on a local 2-CPU Ray give the one-process audit's numbers, byte for
byte, and the audit then only reads its store."""

from __future__ import annotations

import json

import pytest

from unlearn_core.cli import main

pytestmark = pytest.mark.lab

TABLES = ("verdicts", "evidence", "scorecard_summary", "patching_uds", "relearning_curve", "data_check")


def _audit(lab, out, *extra) -> dict:
    # one relearning seed: where the work runs is under test here, not the attack's seeds
    args = ["audit", "--lab", str(lab), "--out", str(out), "--analyses", "scorecard,patching,relearning",
            "--set", "relearning.seeds=1", "--device", "cpu", *extra]
    assert main(args) == 0
    return json.loads((out / "report.json").read_text())


def test_ray_tasks_give_the_one_process_numbers(tiny_lab, tmp_path, capsys):
    pytest.importorskip("ray")
    serial = _audit(tiny_lab, tmp_path / "serial", "--jobs", "1")
    capsys.readouterr()
    ray = _audit(tiny_lab, tmp_path / "ray", "--engine", "ray", "--jobs", "2")
    err = capsys.readouterr().err
    # every analysis and the data check ran as a Ray task; the audit itself only read the store
    for name in ("data_check", "scorecard", "patching", "relearning"):
        assert f"] {name}: " in err and "done, Ray)" in err, err
    assert all(a["from_store"] for a in ray["analyses"].values()), ray["analyses"]
    assert not any(a["from_store"] for a in serial["analyses"].values())
    for table in TABLES:
        got, want = ((tmp_path / run / f"{table}.csv").read_bytes() for run in ("ray", "serial"))
        assert got == want, table
    assert {n: c.get("verdict") for n, c in ray["checkpoints"].items()} == {
        n: c.get("verdict") for n, c in serial["checkpoints"].items()}
    assert {a: r["store_key"] for a, r in ray["analyses"].items()} == {
        a: r["store_key"] for a, r in serial["analyses"].items()}
    # asked again: everything is stored, no Ray is started
    _audit(tiny_lab, tmp_path / "ray", "--engine", "ray", "--jobs", "2")
    assert "Ray)" not in capsys.readouterr().err


def test_ray_splits_the_longest_analysis_by_checkpoints_where_the_records_say_it_pays(tiny_lab, tmp_path, capsys):
    """With this machine's timing record for relearning (a first run at another setting) and nothing else to compute,
    relearning's checkpoints go to the 2 CPUs as 2 Ray tasks (the pool's rule, run.parallel.split_tasks); the parts are
    stored apart and read back whole: the one-process tables, byte for byte."""
    pytest.importorskip("ray")
    store = tmp_path / "s.sqlite"
    base = ["audit", "--lab", str(tiny_lab), "--analyses", "relearning", "--set", "relearning.seeds=1",
            "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "a"), "--store", str(store), "--set", "relearning.steps=2",
                 "--jobs", "1"]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "ray"), "--store", str(store), "--set", "relearning.steps=3",
                 "--engine", "ray", "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    assert "relearning (part 1 of 2: " in err and "relearning (part 2 of 2: " in err and "done, Ray)" in err, err
    assert main([*base, "--out", str(tmp_path / "serial"), "--set", "relearning.steps=3", "--jobs", "1"]) == 0
    for table in ("verdicts", "evidence", "relearning_curve", "relearning_summary"):
        got, want = ((tmp_path / run / f"{table}.csv").read_bytes() for run in ("ray", "serial"))
        assert got == want, table


def test_without_ray_installed_the_message_says_how(monkeypatch, tiny_lab, tmp_path, capsys):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    args = ["audit", "--lab", str(tiny_lab), "--out", str(tmp_path), "--analyses", "scorecard,patching",
            "--engine", "ray"]
    assert main(args) == 2
    assert "pip install '.[ray]'" in capsys.readouterr().err
