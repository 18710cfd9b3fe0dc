"""Independent analyses in worker processes, written to the one results store; the audit then reads them back.

torch's small-model forward passes use one intra-op thread (unlearn_core.threads), so a single audit uses one core.
Analyses of one workspace are independent computations, but not in one process: they hook the SAME model objects
(noise, patching, steering), so threads would have to take turns (threads.models_in_use). Separate processes each
load their own copy of the checkpoints (seconds for the demo lab) and write their result under the same content key
the serial path would use, so the audit that follows serves every analysis from the store and the verdict path is
unchanged. The numbers are the serial ones: same code, same seeds, one thread per process.

Processes are spawned, not forked: a fork of a process whose OpenMP pool already ran can hang in the child.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from unlearn_core.workspace import WorkspaceSpec

Progress = Callable[[float, str], None]

# Longest first (a pool that starts the longest job last ends waiting on it alone), used when the store has no timing
# record: the full default-lab audit on a fresh store and an empty SAE cache, two workers (benchmarks/MEASUREMENTS.md,
# stop 27). SAE restoration is second because a first audit also trains its SAE.
_LONGEST_FIRST = ("attribution", "sae_restoration", "relearning", "decodability", "scorecard", "keyword_recovery",
                  "perturbation", "concept_vectors", "update_revert", "quantization", "extraction", "representation",
                  "patching")

_LOADED: dict[tuple, tuple] = {}  # per worker process: (spec, accept_partial) -> (models, data)


def init_worker() -> None:
    """One thread for everything in a worker: torch's intra-op pool and the BLAS / OpenMP pools numpy, scipy and
    sklearn use (threadpoolctl). With torch alone limited, the decodability probe's sklearn fits ran on two BLAS
    threads beside the other worker and took 73 s instead of 25 s."""
    import torch
    import transformers
    from threadpoolctl import threadpool_limits

    _exit_with_parent()
    torch.set_num_threads(1)
    threadpool_limits(limits=1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers.utils.logging.set_verbosity_error()  # as the CLI itself: no per-checkpoint loading bars
    transformers.utils.logging.disable_progress_bar()


def _exit_with_parent() -> None:
    """A worker ends when the process that started it dies. ProcessPoolExecutor's workers outlive a parent killed
    with SIGKILL (or by the OOM killer): each sat idle holding ~380 MB, forever, on a shared machine."""
    import threading
    from multiprocessing.connection import wait

    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def stop_pool(pool) -> None:
    """End a pool now: cancel what has not started and terminate the workers still running something. Why: the
    executor's shutdown waits for every running task, so an error or Ctrl-C in one lab stage or analysis left the
    user waiting for the others (a minute for a lab stage, up to the longest analysis for an audit)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14: cancels, terminates and shuts down
    if terminate is not None:
        terminate()
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


def _compute(spec: WorkspaceSpec, accept_partial: bool, name: str, config, store_path: str) -> tuple[str, float, bool]:
    from unlearn_core.audit import run_analysis
    from unlearn_core.registry import get_spec
    from unlearn_core.store import ResultsStore

    key = (spec, accept_partial)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = (spec.load_models(), spec.load_data(accept_partial=accept_partial))
    models, data = _LOADED[key]
    t0 = time.perf_counter()
    _, cached = run_analysis(get_spec(name), models, data, ResultsStore(store_path), config=config)
    return name, time.perf_counter() - t0, cached


def order(analyses: list[str], seconds: dict[str, float] | None = None) -> list[str]:
    """Longest first: by estimated seconds where every analysis has one (this machine's timing records), else by
    the measured default-lab order; analyses it does not know go first (their length is unknown)."""
    if seconds and all(a in seconds for a in analyses):
        return sorted(analyses, key=lambda a: -seconds[a])
    rank = {a: i for i, a in enumerate(_LONGEST_FIRST)}
    return sorted(analyses, key=lambda a: rank.get(a, -1))


def prefill_store(spec: WorkspaceSpec, analyses: list[str], store_path: str | Path, jobs: int,
                  configs: dict[str, object] | None = None, accept_partial: bool = False,
                  progress: Progress | None = None, estimates: dict[str, float] | None = None) -> dict[str, float]:
    """Compute every analysis the store lacks in `jobs` worker processes; {analysis: seconds in its worker}.

    An analysis already in the store comes back at once (its worker only reads it). A worker's error is raised here
    with the analysis named. estimates: expected seconds per analysis, to start the longest first."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    configs = configs or {}
    seconds: dict[str, float] = {}
    todo = order(list(dict.fromkeys(analyses)), estimates)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)) or 1, mp_context=mp.get_context("spawn"),
                               initializer=init_worker)
    try:
        futures = {pool.submit(_compute, spec, accept_partial, a, configs.get(a), str(store_path)): a for a in todo}
        for done, fut in enumerate(as_completed(futures), 1):
            name = futures[fut]
            try:
                _, secs, cached = fut.result()
            except Exception as exc:
                raise RuntimeError(f"{name} failed in its worker process: {type(exc).__name__}: {exc}") from exc
            seconds[name] = secs
            if progress:
                progress(done / len(todo), f"{name}: {'from the store' if cached else f'{secs:.1f} s'} "
                                           f"({done}/{len(todo)} done, {jobs} processes)")
    except BaseException:  # an analysis failed, or Ctrl-C: the others' work is not waited for
        stop_pool(pool)
        raise
    pool.shutdown()
    return seconds
