"""The audit in worker processes gives the serial audit's numbers, and the serial code path then serves them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from unlearn_core.cli import main

pytestmark = pytest.mark.lab


def _audit(lab, out, *extra) -> dict:
    # one relearning seed: the split of work over processes is under test here, not the attack's seeds
    args = ["audit", "--lab", str(lab), "--out", str(out), "--analyses", "scorecard,patching,relearning",
            "--set", "relearning.seeds=1", *extra]
    assert main(args) == 0
    return json.loads((out / "report.json").read_text())


def test_two_processes_give_the_serial_numbers(tiny_lab, tmp_path):
    serial = _audit(tiny_lab, tmp_path / "serial", "--jobs", "1")
    par = _audit(tiny_lab, tmp_path / "par", "--jobs", "2")
    # every analysis was computed by a worker: the audit itself only read the store
    assert all(a["from_store"] for a in par["analyses"].values()), par["analyses"]
    assert not any(a["from_store"] for a in serial["analyses"].values())
    for table in ("verdicts", "evidence", "scorecard_summary", "patching_uds", "relearning_curve"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "serial" / f"{table}.csv"),
                                      pd.read_csv(tmp_path / "par" / f"{table}.csv"), check_exact=True)


def test_workers_only_for_what_the_store_lacks(tiny_lab, tmp_path, monkeypatch):
    """Worker processes start only for analyses the store lacks, and only for two or more: a worker's start (imports,
    every checkpoint loaded) costs seconds where reading a stored result costs milliseconds (a re-run with every
    result stored spent 6 of its 19 s starting two workers that only read the store)."""
    import unlearn_core.run.parallel as parallel

    calls, real = [], parallel.prefill_store

    def spy(spec, analyses, *args, **kwargs):
        calls.append(list(analyses))
        return real(spec, analyses, *args, **kwargs)

    monkeypatch.setattr(parallel, "prefill_store", spy)
    first = _audit(tiny_lab, tmp_path, "--jobs", "2")
    assert calls == [["scorecard", "patching", "relearning"]]
    again = _audit(tiny_lab, tmp_path, "--jobs", "2")  # everything stored: no pool
    assert calls == [["scorecard", "patching", "relearning"]]
    assert all(a["from_store"] for a in again["analyses"].values())
    assert again["checkpoints"] == first["checkpoints"]
    args = ["audit", "--lab", str(tiny_lab), "--out", str(tmp_path), "--jobs", "2",
            "--analyses", "scorecard,patching,relearning,representation", "--set", "relearning.seeds=1"]
    assert main(args) == 0  # one analysis left: computed in the audit's own process
    assert len(calls) == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert {a: r["from_store"] for a, r in report["analyses"].items()} == {
        "scorecard": True, "patching": True, "relearning": True, "representation": False}


def test_the_default_is_one_process_per_core_for_what_the_store_lacks(tiny_lab, tmp_path, monkeypatch, capsys):
    """Without --jobs a new user gets the machine: one process per core (no more than the analyses to compute, or
    the copies of the checkpoints that fit in memory), and none started for an audit the store holds."""
    import os

    import unlearn_core.run.parallel as parallel
    from unlearn_core.run.workspace import lab_workspace

    monkeypatch.delenv("UNLEARN_AUDIT_JOBS", raising=False)
    spec = lab_workspace(tiny_lab)
    cores = len(os.sched_getaffinity(0))
    assert parallel.default_jobs(spec, 12)[0] == cores and parallel.default_jobs(spec, 1) == (1, "one analysis to "
                                                                                                 "compute")
    assert parallel.default_jobs(spec, 2)[0] == min(2, cores)
    with monkeypatch.context() as m:  # one analysis whose split pays (the records' seconds) takes a process per part
        m.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
        assert parallel.default_jobs_for(spec, ["relearning"], None) == (1, "one analysis to compute")
        jobs, why = parallel.default_jobs_for(spec, ["relearning"], {"relearning": 100.0})
        assert jobs == 4 and why.startswith("one per core"), why
        m.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
        jobs, why = parallel.default_jobs_for(spec, ["relearning", "scorecard"], {"relearning": 100.0, "scorecard": 1})
        assert jobs == 10 and why.startswith("one per part to compute (10:"), why  # 9 parts + scorecard
    import unlearn_core.checkpoints.memory as memory

    with monkeypatch.context() as m:
        m.setattr(memory, "available_bytes", lambda device: 0)
        assert parallel.default_jobs(spec, 12)[0] == 1  # not even two copies fit: one process
    with monkeypatch.context() as m:
        m.setenv("UNLEARN_AUDIT_JOBS", "two")
        with pytest.raises(ValueError, match="UNLEARN_AUDIT_JOBS must be a whole number"):
            parallel.default_jobs(spec, 12)

    calls, real = [], parallel.prefill_store

    def spy(spec, analyses, store_path, jobs, *args, **kwargs):
        calls.append(jobs)
        return real(spec, analyses, store_path, jobs, *args, **kwargs)

    monkeypatch.setattr(parallel, "prefill_store", spy)
    _audit(tiny_lab, tmp_path)
    err = capsys.readouterr().err
    assert f"processes: {min(3, cores)} (" in err and calls == ([min(3, cores)] if cores > 1 else [])
    _audit(tiny_lab, tmp_path)  # every result stored: no worker, nothing said about processes
    assert "processes:" not in capsys.readouterr().err and len(calls) == (1 if cores > 1 else 0)


def test_bad_jobs_value_exits_2(tiny_lab, tmp_path, capsys):
    assert main(["audit", "--lab", str(tiny_lab), "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err


def test_longest_first_order():
    """The pool starts the longest analysis first: by this machine's estimates when every analysis has one, else by
    the measured default-lab order (attribution, the longest, first); an unknown analysis goes first."""
    from unlearn_core.run.parallel import order

    names = ["patching", "scorecard", "attribution", "sae_restoration"]
    assert order(names) == ["attribution", "sae_restoration", "scorecard", "patching"]
    est = {"patching": 90.0, "scorecard": 1.0, "attribution": 10.0, "sae_restoration": 5.0}
    assert order(names, est) == ["patching", "attribution", "sae_restoration", "scorecard"]
    assert order(names, {"patching": 90.0}) == order(names)  # partial estimates: the static order
    assert order(["scorecard", "new_probe"])[0] == "new_probe"


_POOL_SCRIPT = """
import os, sys, time
from unlearn_core.lab.build import _pool
if __name__ == "__main__":
    pool = _pool(2)
    pool.submit(os.getpid).result()
    pool.submit(os.getpid).result()
    print("ready", flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    """A parent killed with SIGKILL (or by the OOM killer) leaves no idle worker behind: before, ProcessPoolExecutor's
    workers sat on their queue forever, ~380 MB each."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    script = tmp_path / "pool.py"
    script.write_text(_POOL_SCRIPT)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert len(workers) >= 2, workers  # the two workers (and multiprocessing's resource tracker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)], "worker processes outlived their killed parent"
    finally:
        proc.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _sleep(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def test_stop_pool_ends_running_work_instead_of_waiting_for_it():
    """An error or Ctrl-C in one stage of a lab build (or one analysis of an audit) stops the pool at once: the
    executor's own shutdown waited for every task still running (a minute for a lab stage). A task sleeping ten
    minutes stands in for one; the pool must be gone long before it would end."""
    import threading
    import time

    from unlearn_core.lab.build import _pool
    from unlearn_core.run.parallel import stop_pool

    pool = _pool(2)
    workers = [pool.submit(_sleep, 0).result() for _ in range(4)]  # both workers started and answering
    long = pool.submit(_sleep, 600)
    for _ in range(3):
        pool.submit(_sleep, 600)
    while not long.running():
        time.sleep(0.05)
    stopper = threading.Thread(target=stop_pool, args=(pool,), daemon=True)
    stopper.start()
    stopper.join(timeout=120)
    assert not stopper.is_alive(), "stop_pool waited for the running task"
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in set(workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in set(workers) if _alive(p)], "a worker kept running after stop_pool"


def test_the_audits_own_process_computes_beside_its_workers(tiny_lab, tmp_path, monkeypatch):
    """--jobs 2 is the audit's process and ONE worker: the audit has every checkpoint loaded already, so it takes
    analyses from the same longest-first list instead of waiting for a second worker to start (imports and loading)."""
    import os

    import unlearn_core.run.audit as audit

    mine, real = [], audit.run_analysis

    def spy(analysis, *args, **kwargs):
        result, cached = real(analysis, *args, **kwargs)
        if not cached:
            mine.append((analysis.name, os.getpid()))
        return result, cached

    monkeypatch.setattr(audit, "run_analysis", spy)
    report = _audit(tiny_lab, tmp_path, "--jobs", "2")
    assert all(a["from_store"] for a in report["analyses"].values())  # the audit then only read the store
    computed_here = {n for n, pid in mine if pid == os.getpid()}
    assert "relearning" in computed_here  # the longest of the three: taken first, by the process that is ready first
    assert computed_here < {"scorecard", "patching", "relearning"}  # and not all of them: the worker had its share


def test_a_workers_error_stops_the_audits_own_work(tiny_lab, tmp_path):
    from unlearn_core.run.parallel import prefill_store
    from unlearn_core.run.workspace import lab_workspace

    spec = lab_workspace(tiny_lab, unlearned=["ga"])  # one checkpoint: no analysis is split into parts
    local = (spec.load_models(), spec.load_data())
    with pytest.raises(RuntimeError, match="patching failed in its worker process: TypeError"):
        prefill_store(spec, ["scorecard", "patching"], tmp_path / "r.sqlite", 2, configs={"patching": "not a config"},
                      local=local)


def _visible_gpu(_i: int) -> tuple[int, str | None]:
    import os
    import time

    time.sleep(0.3)  # every worker takes a task
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def _main_module_file(_i: int) -> str | None:
    import sys

    return getattr(sys.modules.get("__mp_main__"), "__file__", None)


def test_one_worker_per_gpu_each_pinned_to_its_own(tiny_lab, monkeypatch):
    """On a machine with several GPUs (faked here: this test runs on CPU), each worker sees one GPU, not the first
    (the audit's own process keeps it); the default is one process per GPU. A chosen cuda:k, a sharded model or a
    CPU workspace pins nothing."""
    from dataclasses import replace

    import torch

    import unlearn_core.checkpoints.memory as memory
    import unlearn_core.run.parallel as parallel
    from unlearn_core.run.workspace import lab_workspace

    spec = replace(lab_workspace(tiny_lab), device="cuda")
    monkeypatch.setattr(memory, "pick_device", lambda device="auto", max_memory=None: (
        torch.device("cpu" if device == "cpu" else "cuda"), torch.bfloat16))
    monkeypatch.setattr(parallel, "gpu_ids", lambda: ["2", "5", "7"])
    monkeypatch.delenv("UNLEARN_AUDIT_JOBS", raising=False)
    assert parallel.worker_devices(spec, 2) == ["5", "7"]
    assert parallel.worker_devices(spec, 4) == ["5", "7", "2", "5"]  # in turn when there are more workers
    assert parallel.default_jobs(spec, 9) == (3, "one per GPU")
    assert parallel.default_jobs(spec, 2) == (2, "one per analysis to compute (2)")
    assert parallel.worker_devices(replace(spec, device="cuda:1"), 2) is None
    assert parallel.default_jobs(replace(spec, device="cuda:1"), 9) == (1, "one GPU")
    assert parallel.worker_devices(replace(spec, device="cpu"), 2) is None
    assert parallel.worker_devices(spec, 2, gpus=["0"]) is None
    pool = parallel.start_pool(2, spec)  # the warm-up's loading fails on the fake GPU: it is only a warm-up
    try:
        seen = dict(pool.map(_visible_gpu, range(8)))
    finally:
        pool.shutdown()
    assert sorted(seen.values()) == ["5", "7"], seen


def test_workers_do_not_rerun_the_parents_main_script(tmp_path, monkeypatch):
    """Under Streamlit __main__ is the page script; a spawned worker re-imports __main__ first, and would run the
    dashboard. Workers start with a bare __main__, and the parent's is put back."""
    import sys
    import types

    import unlearn_core.run.parallel as parallel

    script = tmp_path / "page.py"
    marker = tmp_path / "ran"
    script.write_text(f"open({str(marker)!r}, 'w').write('the page script ran in a worker')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    pool = parallel.start_pool(1)
    try:
        assert pool.submit(_main_module_file, 0).result(timeout=120) is None
    finally:
        pool.shutdown()
    assert sys.modules["__main__"] is page
    assert not marker.exists()


def test_an_analysis_split_over_processes_gives_the_serial_numbers(tiny_lab, tmp_path):
    """Where the timing records say one analysis is the critical path, its checkpoints are split over the processes
    (run.parallel.split_tasks); the audit then assembles the parts from the store and writes the serial audit's
    CSVs to the byte."""
    from unlearn_core.analyses.settings import build_configs
    from unlearn_core.run.parallel import prefill_store
    from unlearn_core.run.workspace import lab_workspace

    spec = lab_workspace(tiny_lab)
    store = tmp_path / "split.sqlite"
    configs = build_configs(["relearning.seeds=1"], None, {})
    secs = prefill_store(spec, ["patching", "relearning"], store, 2, configs, estimates={"relearning": 100.0,
                         "patching": 1.0}, local=(spec.load_models(), spec.load_data()))
    assert [k for k in secs if k.startswith("relearning (part")] and "relearning" not in secs, secs
    for out, extra in (("split", ["--store", str(store)]), ("serial", ["--store", str(tmp_path / "serial.sqlite")])):
        assert main(["audit", "--lab", str(tiny_lab), "--out", str(tmp_path / out), "--analyses",
                     "patching,relearning", "--set", "relearning.seeds=1", "--jobs", "1", *extra]) == 0
    report = json.loads((tmp_path / "split" / "report.json").read_text())
    assert all(a["from_store"] for a in report["analyses"].values()), report["analyses"]
    for table in ("verdicts", "evidence", "relearning_curve", "relearning_summary", "patching_uds"):
        a, b = (tmp_path / side / f"{table}.csv" for side in ("split", "serial"))
        assert a.read_bytes() == b.read_bytes(), table


def test_one_analysis_alone_is_split_over_the_processes_where_the_records_say_it_pays(tiny_lab, tmp_path, capfd,
                                                                                      monkeypatch):
    """`--analyses relearning` alone: with this machine's timing record (from a first run) its checkpoints are split
    over the processes (one part each, the original and the reference in every part); the default process count
    counts the parts, and the audit reads the parts back whole."""
    import os

    store = tmp_path / "s.sqlite"
    base = ["audit", "--lab", str(tiny_lab), "--analyses", "relearning", "--store", str(store),
            "--set", "relearning.seeds=1"]
    assert main([*base, "--out", str(tmp_path / "a"), "--set", "relearning.steps=2", "--jobs", "1"]) == 0
    first = capfd.readouterr().err
    assert "(part" not in first  # no record before it: one process, nothing split
    monkeypatch.delenv("UNLEARN_AUDIT_JOBS", raising=False)  # the CLI's own default, on a 2-core machine
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert main([*base, "--out", str(tmp_path / "b"), "--set", "relearning.steps=3"]) == 0
    err = capfd.readouterr().err
    assert "processes: 2 (one per core" in err, err  # 2 parts of one analysis: 2 processes, not 1
    assert "relearning (part 1 of 2" in err and "relearning (part 2 of 2" in err, err
    lab = json.loads((tiny_lab / "lab.json").read_text())["checkpoints"]
    unlearned = {n for n, c in lab.items() if c["role"] == "unlearned"}
    summary = pd.read_csv(tmp_path / "b" / "relearning_summary.csv")
    assert set(summary["model"]) == {"original", "retain_only", *unlearned}
    assert set(pd.read_csv(tmp_path / "b" / "verdicts.csv")["model"]) == unlearned
