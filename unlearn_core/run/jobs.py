"""One computation, resolved, hashed and keyed once; one run-or-serve path for the CLI, the pages, the data check,
the workers and the series.

A `Job` is an analysis with its config resolved against the models' shape (layer=None -> the layer it means), the
config's hash, the checkpoints' and data's hashes and the results-store key, all made once when the job is planned.
`run_or_serve` serves it from the store or computes it (at most once per key, also across threads), records its
wall time for the next estimate, and loads the models only when it has to compute. For analyses whose checkpoints
are independent (AnalysisSpec.restrict), a subset of a stored set is served from it and a set that grew from a
stored one computes only the checkpoints that are new.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from unlearn_core.analyses import registry
from unlearn_core.analyses.spec import AnalysisSpec, Shape
from unlearn_core.checkpoints.residency import DeferredModel
from unlearn_core.model.arch import n_layers
from unlearn_core.model.threads import few_threads, model_params, models_in_use
from unlearn_core.run import timing
from unlearn_core.store.hashing import hash_config
from unlearn_core.store.results import ResultsStore, make_key
from unlearn_core.store.timings import TimingRecord
from unlearn_core.types import AuditData, ModelSet, Progress

__all__ = ["Job", "ResultsStore", "checkpoints_to_compute", "plan", "plan_for", "run_or_serve", "serve", "shape_of",
           "stored"]


@dataclass(frozen=True)
class Job:
    spec: AnalysisSpec
    config: object  # resolved: every automatic default made explicit
    config_hash: str
    checkpoints: dict[str, str]  # checkpoint name -> content hash
    data_hash: str
    key: str  # the results-store key

    @property
    def name(self) -> str:
        return self.spec.name


def shape_of(models: ModelSet, data: AuditData) -> Shape:
    o = models.original
    if isinstance(o, DeferredModel):  # from its folder, loaded or not: one shape, so one key, for the whole run
        return Shape(o.n_layers, len(data.forget), o.n_params)
    return Shape(n_layers(models.original.model), len(data.forget),
                 sum(p.numel() for p in models.original.model.parameters()))  # a tied matrix once, as on disk


def _spec(analysis: AnalysisSpec | str) -> AnalysisSpec:
    return registry.get_spec(analysis) if isinstance(analysis, str) else analysis


def plan(analysis: AnalysisSpec | str, checkpoints: dict[str, str], data_hash: str, config=None,
         shape: Shape | None = None) -> Job:
    """A job from hashes alone (no model loaded): what a page needs to find a stored result. `shape` resolves the
    config's automatic defaults; an analysis without any needs none."""
    spec = _spec(analysis)
    config = spec.default_config() if config is None else config
    if spec.resolve is not None:
        if shape is None:
            raise ValueError(f"{spec.name}: its config has automatic defaults; plan it with the models' shape")
        config = spec.resolve(config, shape)
    config_hash = hash_config(config)
    checkpoints = dict(checkpoints)
    return Job(spec, config, config_hash, checkpoints, data_hash, make_key(spec.name, checkpoints, data_hash,
                                                                           config_hash))


def plan_for(analysis: AnalysisSpec | str, models: ModelSet, data: AuditData, config=None) -> Job:
    return plan(analysis, {n: m.hash for n, m in models.all().items()}, data.hash, config, shape_of(models, data))


def serve(job: Job, store: ResultsStore):
    """The stored result of this job, or None (also for a payload that no longer decodes: it is recomputed).

    Without its own entry, a stored result over a superset of its checkpoints serves it, restricted to them, where
    the analysis declares that one checkpoint's numbers do not depend on the others (AnalysisSpec.restrict): an
    audit of fewer checkpoints, or the same set without the reference, computes nothing."""
    try:
        hit = store.get_obj(job.key)
    except Exception:  # noqa: BLE001 - an undecodable old payload is simply recomputed
        hit = None
    if hit is not None or job.spec.restrict is None:
        return hit
    for key in store.supersets(job.name, job.checkpoints, job.data_hash, job.config_hash):
        try:
            return job.spec.restrict(store.get_obj(key), tuple(job.checkpoints))
        except Exception:  # noqa: BLE001 - an old payload that does not decode or restrict: the next, else compute
            continue
    return None


def _grow(job: Job, ms: ModelSet, data: AuditData, store: ResultsStore, progress: Progress | None):
    """A set that grew from a stored one: only the checkpoints the stored result lacks are computed (with the
    original and the reference, under their own key, so they serve later sets too) and the two results merged
    (analyses.common.subset.merge_parts), where the analysis declares its checkpoints independent (restrict).
    None when no stored subset helps or the parts do not merge: the caller computes the whole set."""
    from unlearn_core.analyses.common.subset import CannotMerge, merge_parts
    from unlearn_core.store.codec import decode_result, encode_result

    if job.spec.restrict is None:
        return None
    fixed = {ms.original.name} | ({ms.retain_only.name} if ms.retain_only is not None else set())
    for key, have in store.subsets(job.name, job.checkpoints, job.data_hash, job.config_hash, fixed):
        try:
            part = store.get_obj(key)
        except Exception:  # noqa: BLE001 - an old payload that does not decode: the next, else compute
            continue
        if part is None:
            continue
        sub = ModelSet(ms.original, {n: m for n, m in ms.unlearned.items() if n not in have}, ms.retain_only)
        hashes = {n: m.hash for n, m in sub.all().items()}
        sub_key = make_key(job.name, hashes, job.data_hash, job.config_hash)

        def compute_rest(sub=sub):
            with models_in_use(sub, progress), few_threads(model_params(sub)):
                return job.spec.compute(sub, data, job.config, progress=progress)

        rest, _ = store.get_or_compute(sub_key, compute_rest, analysis=job.name, checkpoints=hashes,
                                       data_hash=job.data_hash, config_hash=job.config_hash)
        try:  # both parts as the store gives them back, so their shared fields compare alike
            return merge_parts([part, decode_result(encode_result(rest))], list(job.checkpoints))
        except CannotMerge:
            return None
    return None


def checkpoints_to_compute(job: Job, store: ResultsStore) -> int:
    """How many checkpoints computing this job runs through: all of them, or, for a set that grew from a stored one
    (_grow), the new ones with the original and the reference: what a time estimate scales with."""
    if job.spec.restrict is None:
        return len(job.checkpoints)
    fixed = {"original", "retain_only"} & set(job.checkpoints)
    found = store.subsets(job.name, job.checkpoints, job.data_hash, job.config_hash, fixed)
    return len(job.checkpoints) - len(found[0][1]) + len(fixed) if found else len(job.checkpoints)


def stored(job: Job, store: ResultsStore) -> bool:
    """Whether `serve` has it, without decoding anything."""
    return store.get(job.key) is not None or (
        job.spec.restrict is not None
        and bool(store.supersets(job.name, job.checkpoints, job.data_hash, job.config_hash)))


def run_or_serve(job: Job, models: ModelSet | Callable[[], ModelSet], data: AuditData, store: ResultsStore | None,
                 progress: Progress | None = None) -> tuple[object, bool]:
    """(result, served_from_store). `models` may be a loader: it is called only when the result must be computed.
    The loaded models must be the ones the job was planned for (their hashes are checked)."""
    took: list[float] = []
    loaded: list[ModelSet] = []

    def compute():
        ms = models() if callable(models) else models
        hashes = {n: m.hash for n, m in ms.all().items()}
        if hashes != job.checkpoints:
            raise ValueError(f"{job.name}: the loaded checkpoints are not the ones this job was planned for")
        loaded.append(ms)
        t0 = time.perf_counter()
        grown = _grow(job, ms, data, store, progress) if store is not None else None
        if grown is not None:  # no timing record: the time of part of the set is not an estimate of the whole
            return grown
        with models_in_use(ms, progress), few_threads(model_params(ms)):  # shared models: one at a time
            result = job.spec.compute(ms, data, job.config, progress=progress)
            took.append(time.perf_counter() - t0)
            return result

    if store is None:
        return compute(), False
    hit = serve(job, store)
    if hit is not None:
        return hit, True
    result, cached = store.get_or_compute(job.key, compute, analysis=job.name, checkpoints=job.checkpoints,
                                          data_hash=job.data_hash, config_hash=job.config_hash)
    if took:  # the next run of this analysis can be estimated before it starts (run.timing)
        record = TimingRecord(job.name, job.config_hash, took[0], timing.workload(loaded[0], data),
                              timing.device_of(loaded[0]))
        store.record_timing(job.key, record)
    return result, cached
