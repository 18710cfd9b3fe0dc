"""Crash safety under kill -9: the SQLite results store stays consistent (PRAGMA integrity_check), every result that
was committed before the kill is intact, a re-run completes; a killed lab build publishes nothing.

Kill points are random (seeded per run and printed, so a failure can be replayed with UNLEARN_AUDIT_KILL_SEED).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("UNLEARN_AUDIT_KILL_SEED", random.SystemRandom().randrange(10**6)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}

# a child that writes results as fast as it can, printing each key only after put() returned (committed)
WRITER = """
import hashlib, sys
from unlearn_core.store.results import ResultsStore
store, i = ResultsStore(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
while True:
    key = f"k{i:06d}"
    seed = hashlib.sha256(key.encode()).digest()
    store.put(key, seed * (2000 + i % 7 * 1000), analysis="hammer", checkpoints={"m": key}, data_hash="d",
              config_hash="c")
    print(key, flush=True)
    i += 1
"""


def _payload(key: str) -> bytes:
    i = int(key[1:])
    return hashlib.sha256(key.encode()).digest() * (2000 + i % 7 * 1000)


def _integrity(path: Path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return con.execute("SELECT key, analysis, payload FROM results ORDER BY key").fetchall()
    finally:
        con.close()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _kill_when(proc: subprocess.Popen, deadline: float, ready) -> None:
    """SIGKILL `proc` once ready() is true or at `deadline` (monotonic), whichever comes first."""
    while time.monotonic() < deadline and not ready() and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_store_writes_killed_at_random_points_keep_every_committed_result(tmp_path):
    rng = random.Random(SEED)
    print(f"kill seed {SEED}")
    db = tmp_path / "results.sqlite"
    committed: list[str] = []
    for run in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(len(committed) + run * 1000)],
                                cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.0))  # somewhere inside a stream of write transactions
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        printed = [ln.strip() for ln in proc.stdout.read().splitlines() if ln.strip()]
        committed += printed
        rows = _integrity(db)
        stored = {k: bytes(p) for k, _, p in rows}
        missing = [k for k in committed if k not in stored]
        assert not missing, f"run {run}: committed results lost after kill -9: {missing[:5]}"
        torn = [k for k, p in stored.items() if p != _payload(k)]
        assert not torn, f"run {run}: results with damaged payloads: {torn[:5]}"
        assert len(stored) - len(committed) <= run + 1  # per run at most the one whose commit raced the kill
    assert len(committed) >= 5, "the writer never got to commit: the kills hit nothing"
    from unlearn_core.store.results import ResultsStore

    with ResultsStore(db) as store:  # the store opens and takes writes after all of that
        store.put("after", b"x", analysis="a", checkpoints={}, data_hash="d", config_hash="c")
        assert store.get("after") == b"x" and store.get(committed[0]) == _payload(committed[0])


def _audit(lab: Path, out: Path, analyses: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unlearn_core", "audit", "--lab", str(lab), "--no-reference",
           "--unlearned", f"suppressed_head={lab / 'suppressed_head'}", "--out", str(out), "--analyses", analyses,
           "--device", "cpu"]
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.lab
def test_cli_audit_killed_mid_run_leaves_a_sound_store_and_a_rerun_completes(tiny_lab, tmp_path):
    rng = random.Random(SEED)
    print(f"kill seed {SEED}")
    out = tmp_path / "audit"
    out.mkdir()
    db = out / "results.sqlite"
    from unlearn_core.store.results import ResultsStore

    with ResultsStore(db) as store:  # an earlier result that must survive whatever happens next
        store.put("earlier", b"earlier result", analysis="earlier", checkpoints={"m": "h"}, data_hash="d",
                  config_hash="c")
    analyses = "scorecard"  # two store writes per run: the data check, then the scorecard
    from unlearn_core.analyses import data_check, registry  # registers every result type the audit may have stored

    for name in analyses.split(","):
        registry.get_spec(name)
    assert data_check.DataCheckResult
    wal = db.with_name(db.name + "-wal")
    kills = []
    for attempt in range(2):
        proc = _audit(tiny_lab, out, analyses)
        t0 = time.monotonic()
        if attempt == 0:  # at a random moment
            _kill_when(proc, t0 + rng.uniform(2.0, 8.0), lambda: False)
            how = "random"
        else:  # right after the audit's n-th write to the store (the WAL changes); 90 s: a loaded 2-core CI box
            seen, nth = [_stamp(wal)], rng.choice([1, 2])

            def wrote(seen=seen, nth=nth) -> bool:
                if (now := _stamp(wal)) != seen[-1]:
                    seen.append(now)
                return len(seen) > nth

            _kill_when(proc, t0 + 90, wrote)
            how = f"after write {nth}" if len(seen) > nth else "timeout"
        kills.append((how, round(time.monotonic() - t0, 2), proc.returncode))
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read()
        rows = _integrity(db)
        assert ("earlier", "earlier", b"earlier result") in [(k, a, bytes(p)) for k, a, p in rows]
        with ResultsStore(db) as store:  # whatever is in the store decodes
            for key, analysis, _ in rows:
                if analysis != "earlier":
                    assert store.get_obj(key) is not None
    print(f"audit kills (when, seconds after start, returncode): {kills} (seed {SEED})")
    assert any(how.startswith("after write") for how, _, _ in kills), kills
    proc = _audit(tiny_lab, out, analyses)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert "scorecard" in report["analyses"]
    analyses_stored = {a for _, a, _ in _integrity(db)}
    assert {"earlier", "scorecard"} <= analyses_stored


@pytest.mark.lab
def test_a_killed_lab_build_publishes_nothing(tmp_path):
    """The tiny build takes minutes; killed at random moments while it trains, `out` must never look built, and
    the next build starts over from a clean temporary folder."""
    from unlearn_core.lab.build import is_built
    from unlearn_core.lab.config import get_config

    rng = random.Random(SEED)
    out = tmp_path / "lab"
    partial = out.with_name(out.name + ".partial")
    kills = []
    for _attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "unlearn_core", "lab", "build", "--out", str(out), "--config",
                                 "tiny"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert partial.exists(), "the build never started writing"
        delay = rng.uniform(0.2, 6.0)  # somewhere inside the build
        _kill_when(proc, time.monotonic() + delay, lambda: False)
        assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
        kills.append(round(delay, 2))
        assert not out.exists(), "a killed build left a lab folder behind"
        assert not is_built(out, get_config("tiny"))
    print(f"lab build killed {kills} s after it started writing (seed {SEED})")
