"""Independent analyses in worker processes, written to the one results store; the audit then reads them back.

torch's small-model forward passes use one intra-op thread (model.threads), so a single audit uses one core.
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
import sys
import threading
import time
import types
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from unlearn_core.analyses.registry import longest_first
from unlearn_core.run.workspace import WorkspaceSpec
from unlearn_core.types import Progress

_LOADED: dict[tuple, tuple] = {}  # per worker process: (spec, accept_partial) -> (models, data)


def init_worker(devices=None) -> None:
    """One thread for everything in a worker: torch's intra-op pool and the BLAS / OpenMP pools numpy, scipy and
    sklearn use (threadpoolctl). With torch alone limited, the decodability probe's sklearn fits ran on two BLAS
    threads beside the other worker and took 73 s instead of 25 s. devices: a queue of GPU ids, one taken per
    worker and made its only visible GPU (before CUDA starts), so "cuda" in the worker means its own GPU."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.get(timeout=60)
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


def _compute(spec: WorkspaceSpec, accept_partial: bool, name: str, config, store_path: str,
             data=None, part: tuple[str, ...] | None = None) -> tuple[str, float, bool]:
    """data: the caller's validated data when given (a page's workspace: what it holds is what its keys are planned
    from), else read from the spec's files. part: these unlearned checkpoints only (with the original and the
    reference), stored under their own key (split_tasks)."""
    from unlearn_core.analyses.registry import get_spec
    from unlearn_core.run.audit import run_analysis
    from unlearn_core.store.results import ResultsStore

    key = (spec, accept_partial)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = (spec.load_models(), data if data is not None else spec.load_data(accept_partial=accept_partial))
    models, loaded = _LOADED[key]
    data = loaded if data is None else data
    t0 = time.perf_counter()
    _, cached = run_analysis(get_spec(name), part_of(models, part), data, ResultsStore(store_path), config=config)
    return name, time.perf_counter() - t0, cached


def part_of(models, part: tuple[str, ...] | None):
    """The model set of one part of a split analysis: the original, these unlearned checkpoints, the reference."""
    from unlearn_core.types import ModelSet

    if part is None:
        return models
    return ModelSet(models.original, {n: models.unlearned[n] for n in part}, models.retain_only)


Task = tuple[str, tuple[str, ...] | None]  # (analysis, the unlearned checkpoints of its part; None: all of them)


SPLIT_GAIN = 0.9  # split only when the estimated run is at most this share of the unsplit one


def split_tasks(ordered: list[str], jobs: int, unlearned: list[str], seconds: dict[str, float] | None = None,
                n_fixed: int = 2) -> list[Task]:
    """The longest-first list of analyses as tasks for `jobs` processes, where one analysis is the critical path:
    split by its unlearned checkpoints into one part per process, each part with the original and the reference
    (n_fixed models, computed again in every part); the parts are merged when the audit reads the result
    (run.jobs.serve).

    Split where this machine's timing records (seconds, for every analysis) say it pays: an analysis whose
    checkpoints are independent (SPEC.restrict), when the longest-first run's estimated span with it split, the
    larger of its longest part and (all the work + the fixed models' extra share) / jobs, is at most SPLIT_GAIN of the
    span without (the larger of it and the work / jobs). The 10 % margin is the estimates' own run-to-run spread on
    the 2-core VM (MEASUREMENTS). Without records nothing is split: the split costs the fixed models' share."""
    from unlearn_core.analyses.registry import ANALYSES, get_spec

    k = min(jobs, len(unlearned))
    known = bool(seconds) and all(a in seconds for a in ordered)
    total = sum(seconds[a] for a in ordered) if known else 0.0
    n = len(unlearned) + n_fixed

    def pays(name: str) -> bool:
        if not known or name not in ANALYSES or get_spec(name).restrict is None:
            return False
        t = seconds[name]
        part = t * (-(-len(unlearned) // k) + n_fixed) / n
        split = max(part, (total + (k - 1) * t * n_fixed / n) / jobs)
        return split <= SPLIT_GAIN * max(t, total / jobs)

    tasks: list[Task] = []
    for name in ordered:
        if k >= 2 and pays(name):
            tasks += [(name, tuple(unlearned[j::k])) for j in range(k)]
        else:
            tasks.append((name, None))
    return tasks


def tasks_for(spec: WorkspaceSpec, analyses: list[str], jobs: int,
              seconds: dict[str, float] | None = None) -> list[Task]:
    """The workspace's analyses as the longest-first task list for `jobs` processes (split_tasks: the critical path
    split by checkpoints where the records say it pays); the pool, the CLI's process count and Ray plan from it."""
    return split_tasks(order(list(dict.fromkeys(analyses)), seconds), jobs, [n for n, _ in spec.unlearned], seconds,
                       n_fixed=1 + (spec.retain_only is not None))


def task_label(task: Task, tasks: list[Task]) -> str:
    name, part = task
    if part is None:
        return name
    parts = [t for t in tasks if t[0] == name]
    return f"{name} (part {parts.index(task) + 1} of {len(parts)}: {', '.join(part)})"


JOBS_ENV = "UNLEARN_AUDIT_JOBS"


def default_jobs(spec: WorkspaceSpec, tasks: int) -> tuple[int, str]:
    """(processes, why) for an audit with `tasks` analyses to compute when --jobs is not given: UNLEARN_AUDIT_JOBS,
    else on CPU one per core, no more than the tasks, and no more copies of the checkpoints than fit in half the free
    memory (each process loads its own); on CUDA one per GPU, each pinned to its own (worker_devices; two copies on
    one GPU would compete for it). One process when the checkpoints are loaded one at a time or sharded over a
    memory budget (a device group per worker is not built)."""
    env = os.environ.get(JOBS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"{JOBS_ENV} must be a whole number of processes >= 1, got {env!r}")
        return int(env), JOBS_ENV
    if tasks < 2:
        return 1, "one analysis to compute" if tasks == 1 else "nothing to compute"
    from unlearn_core.checkpoints.memory import available_bytes, pick_device, weight_bytes

    device, dtype = pick_device(spec.device, spec.max_memory)
    if spec.max_memory is not None or spec.resident is not None:
        return 1, "a memory budget was given"
    if device.type == "cuda":
        gpus = gpu_ids() if spec.device in ("auto", "cuda") else []  # cuda:k: the user chose one GPU
        jobs = max(1, min(len(gpus), tasks))
        return jobs, ("one per GPU" if jobs == len(gpus) else f"one per analysis to compute ({tasks})") \
            if jobs > 1 else "one GPU"
    if device.type != "cpu":
        return 1, f"one process on {device.type}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    copies = available_bytes(device) // max(1, 2 * sum(weight_bytes(spec.inspect(), dtype).values()))
    jobs = max(1, min(cores, tasks, copies))
    why = ("one per core" if jobs == cores else f"one per analysis to compute ({tasks})" if jobs == tasks
           else f"{copies} copies of the checkpoints fit in half the free memory")
    return jobs, why


def default_jobs_for(spec: WorkspaceSpec, analyses: list[str], seconds: dict[str, float] | None = None
                     ) -> tuple[int, str]:
    """default_jobs for these analyses as tasks: one analysis alone gets several processes where its split by
    checkpoints pays (e.g. `--analyses relearning` on a lab with timing records), else the analyses' count caps it."""
    cap, _ = default_jobs(spec, max(len(analyses), len(analyses) * len(spec.unlearned)))
    n = len(tasks_for(spec, analyses, cap, seconds))
    jobs, why = default_jobs(spec, n)
    if n > len(analyses) and why.startswith("one per analysis"):
        why = f"one per part to compute ({n}: the longest analysis split by checkpoints, as the timing records say)"
    return jobs, why


def gpu_ids() -> list[str]:
    """The CUDA devices this process may use, named as CUDA_VISIBLE_DEVICES names them (0..n-1 when it is unset)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in env.split(",") if d.strip()] if env is not None else [str(i) for i in range(n)]
    return ids[:n]


def worker_devices(spec: WorkspaceSpec | None, workers: int, gpus: list[str] | None = None) -> list[str] | None:
    """The GPU each worker is pinned to on a machine with several (the audit's own process keeps the first: "cuda"
    there is cuda:0), in turn when there are more workers than GPUs; None (no pinning) on CPU, one GPU, or a model
    sharded over a memory budget."""
    if spec is None or spec.max_memory is not None or spec.device not in ("auto", "cuda"):
        return None  # a chosen cuda:k keeps every process on it
    from unlearn_core.checkpoints.memory import pick_device

    if pick_device(spec.device, None)[0].type != "cuda":
        return None
    gpus = gpu_ids() if gpus is None else gpus
    if len(gpus) < 2:
        return None
    return [gpus[(i + 1) % len(gpus)] for i in range(workers)]


def order(analyses: list[str], seconds: dict[str, float] | None = None) -> list[str]:
    """Longest first: by estimated seconds where every analysis has one (this machine's timing records), else by
        each analysis's SPEC.cost_rank (measured on the full default-lab audit with a fresh store and an empty SAE
    cache, two workers: benchmarks/MEASUREMENTS.md, stop 27; SAE restoration ranks second because a first audit
    trains its SAE)."""
    if seconds and all(a in seconds for a in analyses):
        return sorted(analyses, key=lambda a: -seconds[a])
    return longest_first(analyses)


def start_pool(workers: int, spec: WorkspaceSpec | None = None, accept_partial: bool = False) -> ProcessPoolExecutor:
    """A spawned pool whose `workers` processes start now, importing torch, transformers and the original's model class,
    and loading the checkpoints too when they are small (all of them in at most a tenth of free CPU memory, as the demo
    lab's are). Why now: the audit's own process spends its first seconds on one core (imports, loading, the data
    check) while the other core idles; workers started then are ready when it is. Larger checkpoints load on a
    worker's first task, after the audit has loaded its own copy (so its memory check sees that copy)."""
    ctx = mp.get_context("spawn")
    devices = worker_devices(spec, max(1, workers))
    queue = None
    if devices is not None:
        queue = ctx.Queue()
        for d in devices:
            queue.put(d)
    pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx, initializer=init_worker,
                               initargs=(queue,))
    with _bare_main():
        for _ in range(max(1, workers)):  # a spawn pool starts one process per submitted task while none is idle
            pool.submit(_warm, spec, accept_partial)
    return pool


_MAIN_LOCK = threading.Lock()


@contextmanager
def _bare_main():
    """__main__ is an empty module while the workers are spawned. A spawned child first re-imports the parent's
    __main__ (by module name, or by file path): under Streamlit that is the page script, so every worker would run
    the dashboard; under the CLI it is the CLI's imports. The tasks name their functions by module
    (unlearn_core.run.parallel), so the children need nothing from it."""
    with _MAIN_LOCK:
        saved = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")  # no __spec__, no __file__: nothing to re-import
        try:
            yield
        finally:
            if saved is not None:
                sys.modules["__main__"] = saved


def _warm(spec: WorkspaceSpec | None, accept_partial: bool) -> None:
    import unlearn_core.analyses.registry  # noqa: F401
    import unlearn_core.run.audit  # noqa: F401

    if spec is None:
        return
    try:  # a warm-up only: any problem with the checkpoints or data is reported by the real load
        from unlearn_core.checkpoints.memory import available_bytes, pick_device, weight_bytes

        infos = spec.inspect()
        device, dtype = pick_device(spec.device, spec.max_memory)
        small = sum(weight_bytes(infos, dtype).values()) * 10 <= available_bytes(device)
        if device.type == "cpu" and spec.max_memory is None and small:
            _LOADED.clear()
            _LOADED[(spec, accept_partial)] = (spec.load_models(), spec.load_data(accept_partial=accept_partial))
            return
        from transformers import AutoConfig  # the model class' module alone (GPT-2's is seconds of imports)
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(spec.original))]
    except Exception:  # noqa: BLE001
        _LOADED.clear()


@contextmanager
def _one_thread():
    """The audit's own process computing beside workers: one thread for torch and every BLAS pool, like them."""
    import torch
    from threadpoolctl import threadpool_limits

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(saved)


class _Stopped(Exception):
    """Raised through an analysis' progress callback in the audit's own process when a worker's analysis failed."""


def prefill_store(spec: WorkspaceSpec, analyses: list[str], store_path: str | Path, jobs: int,
                  configs: dict[str, object] | None = None, accept_partial: bool = False,
                  progress: Progress | None = None, estimates: dict[str, float] | None = None,
                  local: tuple | None = None, pool: ProcessPoolExecutor | None = None, data=None,
                  report_in_caller: bool = False) -> dict[str, float]:
    """Compute every analysis the store lacks in `jobs` processes; {task (analysis, or its part): seconds it took}.

    local: (models, data) this process has loaded: it then computes analyses itself beside jobs - 1 workers, taking
    from the same longest-first list, so one worker fewer is started (a worker's start is seconds of imports and
    loading every checkpoint). pool: workers started before (start_pool); stopped here when done. An analysis already
    in the store comes back at once. A worker's error is raised here with the analysis named, and stops the rest.
    estimates: expected seconds per analysis, to start the longest first. data: the validated data to compute on
    (a page's), else the workers read the spec's files. report_in_caller: `progress` is called from this thread only
    (a Streamlit progress bar belongs to the script's thread, and a Stop click is raised in it), at least every
    half second while the run lasts, so a Stop is seen while workers compute; else a worker's result is reported
    from the thread that waited for it, at once."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    configs = configs or {}
    seconds: dict[str, float] = {}
    tasks = tasks_for(spec, analyses, jobs, estimates)
    todo = deque(tasks)
    total = len(todo)
    n_workers = min(jobs - (local is not None), total)
    if pool is None and n_workers > 0:
        pool = start_pool(n_workers, spec, accept_partial)
    lock = threading.Lock()
    failed: list[tuple[str, BaseException]] = []
    news: deque[tuple[float, str]] = deque()
    shown = [(0.0, f"0/{total} done, {jobs} processes"), 0.0]  # (last report, when it was shown)

    def take() -> Task | None:
        with lock:
            return todo.popleft() if todo and not failed else None

    def done(task: Task, secs: float, cached: bool) -> None:
        name = task_label(task, tasks)
        with lock:
            seconds[name] = secs
            msg = (len(seconds) / total, f"{name}: {'from the store' if cached else f'{secs:.1f} s'} "
                                         f"({len(seconds)}/{total} done, {jobs} processes)")
            if progress and not report_in_caller:
                progress(*msg)
            elif progress:
                news.append(msg)

    def report() -> None:  # the caller's thread: what finished since, else the last report again every 0.5 s
        if not (progress and report_in_caller):
            return
        while news:
            shown[0], shown[1] = news.popleft(), time.monotonic()
            progress(*shown[0])
        if time.monotonic() - shown[1] >= 0.5:
            shown[1] = time.monotonic()
            progress(*shown[0])

    def feed() -> None:  # keeps one worker busy: one task at a time, so the longest-first list is shared fairly
        while (task := take()) is not None:
            name, part = task
            try:
                _, secs, cached = pool.submit(_compute, spec, accept_partial, name, configs.get(name),
                                              str(store_path), data, part).result()
            except BaseException as exc:  # noqa: BLE001 - handed to the audit's thread, which raises it
                with lock:
                    failed.append((task_label(task, tasks), exc))
                return
            done(task, secs, cached)

    def check(_frac: float = 0.0, _msg: str = "") -> None:
        if failed:
            raise _Stopped
        report()

    from unlearn_core.analyses.registry import get_spec
    from unlearn_core.run.audit import run_analysis
    from unlearn_core.store.results import ResultsStore

    feeders = [threading.Thread(target=feed, name=f"feed-{i}", daemon=True) for i in range(max(0, n_workers))]
    try:
        task = take() if local is not None else None
        for t in feeders:
            t.start()
        report()
        while task is not None:
            models, own = local
            name, part = task
            t0 = time.perf_counter()
            with _one_thread():
                _, cached = run_analysis(get_spec(name), part_of(models, part), own, ResultsStore(store_path),
                                         config=configs.get(name), progress=check)
            done(task, time.perf_counter() - t0, cached)
            report()
            task = take()
        for t in feeders:
            while t.is_alive():
                t.join(timeout=0.2)
                report()
        report()
        if failed:
            raise _Stopped
    except BaseException as exc:  # an analysis failed, or Ctrl-C: the others' work is not waited for
        if pool is not None:
            stop_pool(pool)
        if failed:
            name, err = failed[0]
            raise RuntimeError(f"{name} failed in its worker process: {type(err).__name__}: {err}") from err
        if isinstance(exc, _Stopped):
            raise RuntimeError("stopped") from exc
        raise
    if pool is not None:
        pool.shutdown()
    return seconds
