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
    audit of fewer checkpoints, or the same set without the reference, computes nothing; and stored parts that
    together hold every checkpoint (an analysis split over processes, run.parallel) are merged and kept whole."""
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
    keys, missing = _cover(job, store)
    if missing or len(keys) < 2:
        return None
    merged = _merged(job, store, keys)
    if merged is not None:  # kept whole: the next read decodes one payload
        store.put_obj(job.key, merged, analysis=job.name, checkpoints=job.checkpoints, data_hash=job.data_hash,
                      config_hash=job.config_hash)
    return merged


FIXED = ("original", "retain_only")  # every part of a set holds the original and the reference (when there is one)


def _cover(job: Job, store: ResultsStore) -> tuple[list[str], set[str]]:
    """(keys of stored parts, names none of them holds): stored results over subsets of this job's checkpoints,
    each holding the original and the reference, taken largest first while each adds a checkpoint; what a set
    computed in parts (run.parallel splits one analysis over several processes) or grown from a stored one is
    assembled from."""
    fixed = set(FIXED) & set(job.checkpoints)
    missing = set(job.checkpoints) - fixed
    keys = []
    for key, have in store.subsets(job.name, job.checkpoints, job.data_hash, job.config_hash, fixed):
        if missing & set(have):
            keys.append(key)
            missing -= set(have)
        if not missing:
            break
    return keys, missing


def _merged(job: Job, store: ResultsStore, keys: list[str], rest=None):
    """The parts (and `rest`, computed) merged into this job's result; None when one does not decode or they do
    not merge (the caller computes the whole set)."""
    from unlearn_core.analyses.common.subset import CannotMerge, merge_parts
    from unlearn_core.store.codec import decode_result, encode_result

    try:
        parts = [store.get_obj(k) for k in keys]
    except Exception:  # noqa: BLE001 - an old payload that does not decode
        return None
    if any(p is None for p in parts):
        return None
    if rest is not None:  # as the store gives it back, so the parts' shared fields compare alike
        parts.append(decode_result(encode_result(rest)))
    try:
        return merge_parts(parts, list(job.checkpoints))
    except CannotMerge:
        return None


def _grow(job: Job, ms: ModelSet, data: AuditData, store: ResultsStore, progress: Progress | None):
    """A set that grew from stored ones: only the checkpoints no stored part holds are computed (with the original
    and the reference, under their own key, so they serve later sets too) and the parts merged
    (analyses.common.subset.merge_parts), where the analysis declares its checkpoints independent (restrict).
    None when no stored part helps or the parts do not merge: the caller computes the whole set."""
    if job.spec.restrict is None:
        return None
    keys, missing = _cover(job, store)
    if not keys:
        return None
    if not missing:
        return _merged(job, store, keys)
    sub = ModelSet(ms.original, {n: m for n, m in ms.unlearned.items() if n in missing}, ms.retain_only)
    hashes = {n: m.hash for n, m in sub.all().items()}
    sub_key = make_key(job.name, hashes, job.data_hash, job.config_hash)

    def compute_rest():
        with models_in_use(sub, progress), few_threads(model_params(sub)):
            return job.spec.compute(sub, data, job.config, progress=progress)

    rest, _ = store.get_or_compute(sub_key, compute_rest, analysis=job.name, checkpoints=hashes,
                                   data_hash=job.data_hash, config_hash=job.config_hash)
    return _merged(job, store, keys, rest)


def checkpoints_to_compute(job: Job, store: ResultsStore) -> int:
    """How many checkpoints computing this job runs through: all of them, or, for a set that grew from stored parts
    (_grow), the new ones with the original and the reference: what a time estimate scales with."""
    if job.spec.restrict is None:
        return len(job.checkpoints)
    keys, missing = _cover(job, store)
    return len(missing) + len(set(FIXED) & set(job.checkpoints)) if keys else len(job.checkpoints)


def stored(job: Job, store: ResultsStore) -> bool:
    """Whether `serve` has it, without decoding anything."""
    if store.get(job.key) is not None:
        return True
    if job.spec.restrict is None:
        return False
    if store.supersets(job.name, job.checkpoints, job.data_hash, job.config_hash):
        return True
    keys, missing = _cover(job, store)
    return len(keys) >= 2 and not missing


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
