"""The audit's analyses as Ray tasks (`audit --engine ray`): on a local Ray, or across the machines of a cluster.

The same jobs as the worker pool's (run.parallel): one task per analysis the results store lacks, longest first,
each declaring what it needs (one CPU, a GPU when the checkpoints go to one, twice their weights in memory) so Ray
places it where that is free. A task loads the checkpoints from their paths (on a cluster: a shared filesystem, or
the same paths on every node), computes with the serial code at one thread, and returns the encoded result; the
driver writes it into ITS results store under the key the serial path would use. The audit that follows then
serves every analysis from the store: the verdict path, and every number, are the one-process ones.

Ray is an optional extra (`pip install .[ray]`); nothing here imports it until an audit asks for it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from unlearn_core.run.workspace import WorkspaceSpec
from unlearn_core.types import AuditData, ModelSet, Progress

_LOADED: dict[str, object] = {}  # per Ray worker process: the workspace's checkpoints, loaded by its first task

ROOT = Path(__file__).resolve().parents[2]  # the folder holding unlearn_core: on the workers' import path


def _spec_key(spec: WorkspaceSpec) -> str:
    return json.dumps(asdict(spec), sort_keys=True, default=str)


def run_task(spec: WorkspaceSpec, data: AuditData, name, config, part: tuple[str, ...] | None = None) -> dict:
    """One analysis (or one part of a split one: these unlearned checkpoints with the original and the reference) in a
    Ray worker: {key, payload, seconds, device, host}. `config` comes resolved by the driver, so the key depends only
    on the checkpoints' and data's hashes. One thread for torch and every BLAS pool, as the pool's workers (the
    numbers do not depend on where a task ran)."""
    import platform

    import torch
    from threadpoolctl import threadpool_limits

    from unlearn_core.run.jobs import plan_for, run_or_serve
    from unlearn_core.run.parallel import part_of
    from unlearn_core.run.timing import device_of
    from unlearn_core.store.codec import encode_result

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    key = _spec_key(spec)
    if key not in _LOADED:
        _LOADED.clear()  # one workspace's checkpoints at a time in a worker
        _LOADED[key] = spec.load_models()
    models = part_of(_LOADED[key], part)
    job = plan_for(name, models, data, config)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1):
        result, _ = run_or_serve(job, models, data, None)
    seconds = time.perf_counter() - t0
    return {"key": job.key, "payload": encode_result(result), "seconds": seconds, "device": device_of(models),
            "host": platform.node()}


def _needs(spec: WorkspaceSpec, ray) -> dict[str, float]:
    """A task's resources: one CPU; one GPU when the workspace goes to CUDA (device "cuda", or "auto" on a cluster
    with GPUs); memory for the checkpoints' weights twice over (a copy for relearning, activations), from the
    safetensors headers."""
    import torch

    from unlearn_core.checkpoints.memory import weight_bytes

    gpus = ray.cluster_resources().get("GPU", 0)
    on_gpu = spec.device.startswith("cuda") or (spec.device == "auto" and gpus > 0)
    dtype = torch.bfloat16 if on_gpu else torch.float32
    need = {"num_cpus": 1, "num_gpus": 1 if on_gpu else 0}
    try:
        need["memory"] = 2 * sum(weight_bytes(spec.inspect(), dtype).values())
    except Exception:  # noqa: BLE001 - sizes unreadable (a hub id not cached): Ray's default placement
        pass
    return need


def prefill_store_ray(spec: WorkspaceSpec, models: ModelSet, data: AuditData, analyses: list[str], store,
                      configs: dict | None = None, address: str | None = None, progress: Progress | None = None,
                      estimates: dict[str, float] | None = None, local_cpus: int | None = None) -> dict[str, float]:
    """Every analysis the store lacks computed as a Ray task and written into `store`; {task label: seconds}.
    models: the driver's set, planned from (WorkspaceSpec.deferred_models: nothing is loaded here). estimates: this
    machine's seconds per analysis; where they cover every analysis the longest one is split by checkpoints over the
    CPUs Ray has (run.parallel.split_tasks, the pool's rule), its parts stored apart and read back whole
    (run.jobs.serve).

    address: a running cluster ("auto", "ray://host:10001", "host:6379"); None starts a local Ray for this audit
    (local_cpus CPUs, default all) and stops it after. A task's error is raised here with the analysis named, and
    the other tasks are cancelled."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--engine ray needs Ray: pip install '.[ray]' (or pip install ray)") from exc
    from unlearn_core.analyses import registry
    from unlearn_core.run.jobs import plan_for, stored
    from unlearn_core.run.parallel import order, part_of, split_tasks, task_label
    from unlearn_core.run.timing import workload_from_spec
    from unlearn_core.store.timings import HOST, TimingRecord

    configs = configs or {}
    planned = [plan_for(a, models, data, configs.get(getattr(a, "name", a))) for a in analyses]
    jobs = {job.name: job for job in planned}  # an analysis: a registry name or a SPEC (the data check)
    todo = order([a for a, job in jobs.items() if not stored(job, store)], estimates)
    if not todo:
        return {}
    started = not ray.is_initialized()
    if started:
        runtime = {"env_vars": {"PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p), "TOKENIZERS_PARALLELISM": "false"}}
        local = address is None  # this audit's own Ray: its workers at normal priority (Ray's default is nice 15,
        # under which a busy machine left a 5 s analysis waiting minutes), a small object store (results are KBs)
        ray.init(address=address, num_cpus=local_cpus if local else None, include_dashboard=False,
                 log_to_driver=False, runtime_env=runtime, configure_logging=False,
                 object_store_memory=200 * 2**20 if local else None,
                 _system_config={"worker_niceness": 0} if local else None)
    seconds: dict[str, float] = {}
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        tasks = split_tasks(todo, cpus, list(models.unlearned), estimates,
                            n_fixed=1 + (models.retain_only is not None))
        task = ray.remote(run_task).options(**_needs(spec, ray), max_retries=0)
        refs = {task.remote(spec, data, jobs[a].spec if jobs[a].spec.name not in registry.ANALYSES else a,
                            jobs[a].config, part): (a, part) for a, part in tasks}
        work = workload_from_spec(spec, data)
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            t = refs.pop(done[0])
            name, label = t[0], task_label(t, tasks)
            try:
                out = ray.get(done[0])
            except Exception as exc:
                for ref in refs:
                    ray.cancel(ref, force=True)
                cause = getattr(exc, "cause", None) or exc
                raise RuntimeError(f"{label} failed in its Ray task: {type(cause).__name__}: {cause}") from exc
            job = jobs[name] if t[1] is None else plan_for(name, part_of(models, t[1]), data, jobs[name].config)
            if out["key"] != job.key:  # the worker loaded other checkpoints than the driver hashed
                raise RuntimeError(f"{label}: the Ray task computed for other checkpoints or data than planned "
                                   "(are the checkpoint paths the same files on every node?)")
            store.put(job.key, out["payload"], analysis=name, checkpoints=job.checkpoints, data_hash=job.data_hash,
                      config_hash=job.config_hash)
            if work is not None and out["host"] == HOST:  # an estimate is for this machine's own runs
                size = replace(work, n_checkpoints=len(job.checkpoints))  # a part's record is of its checkpoints
                store.record_timing(job.key, TimingRecord(name, job.config_hash, out["seconds"], size, out["device"]))
            seconds[label] = out["seconds"]
            if progress:
                progress(len(seconds) / len(tasks), f"{label}: {out['seconds']:.1f} s on {out['host']} "
                                                    f"({len(seconds)}/{len(tasks)} done, Ray)")
    finally:
        if started:
            ray.shutdown()
    return seconds

