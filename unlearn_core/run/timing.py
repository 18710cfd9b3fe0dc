"""What an analysis will cost before it runs, from the wall times this machine recorded for earlier runs.

No model of the hardware is assumed: every computed analysis records its wall time with its size (checkpoints,
parameters per checkpoint, data items) in the results store, and a new run is estimated by scaling the most
similar recorded run of the same analysis, on the same host and device, linearly in checkpoints x parameters x
items. Linear is what the probes do (a forward pass per item per checkpoint, costing about its parameter count);
it is only an estimate, and it says which run it scaled. With no record there is no number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from unlearn_core.run.eta import fmt_about
from unlearn_core.store.timings import HOST, TimingRecord, Workload

INTERACTIVE_S = 60.0  # longer than this, a click is not a question one waits at the screen for
NO_RECORD = "no timing recorded yet on this machine"


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: TimingRecord

    @property
    def scale(self) -> float:
        return self.seconds / self.basis.seconds if self.basis.seconds > 0 else 1.0

    def describe(self) -> str:
        took = _took(self.basis.seconds)
        if abs(self.scale - 1.0) < 0.02:
            return f"{fmt_about(self.seconds)} on this machine (a run of this size took {took})"
        return (f"{fmt_about(self.seconds)} on this machine (scaled x{self.scale:.3g} from a recorded run: "
                f"{self.basis.workload.describe()} in {took})")


def _took(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else fmt_about(seconds).removeprefix("about ")


def estimate(records: Iterable[TimingRecord], target: Workload, config_hash: str | None = None) -> Estimate | None:
    """The nearest record (same settings first, then the smallest size ratios, then the newest) scaled to target."""
    records = [r for r in records if r.seconds >= 0 and math.isfinite(r.seconds)]
    if not records:
        return None

    def distance(r: TimingRecord):
        gap = sum(abs(math.log(a / b)) for a, b in zip(r.workload.dims(), target.dims(), strict=True))
        return r.config_hash != config_hash, gap, -r.created

    best = min(records, key=distance)
    return Estimate(best.seconds * target.work / best.workload.work, best)


def estimate_for(store, analysis: str, target: Workload, device: str, config_hash: str | None = None,
                 host: str = HOST) -> Estimate | None:
    """From this host's and device's records in a results store (another machine's times say nothing here)."""
    return estimate(store.timings(analysis, device=device, host=host), target, config_hash)


def total(estimates: Iterable[Estimate | None]) -> float:
    return sum(e.seconds for e in estimates if e is not None)


def progress_weights(analyses: list[str], estimates: dict[str, Estimate | None]) -> dict[str, float]:
    """Each analysis' share of one progress bar. estimates: those still to compute (the others are served from the
    store at once: no share). Estimated seconds when every one has a record, else equal shares."""
    todo = [a for a in analyses if a in estimates]
    if not todo:
        return dict.fromkeys(analyses, 1.0)
    known = all(estimates[a] is not None for a in todo)
    return {a: (max(estimates[a].seconds, 1e-3) if known else 1.0) if a in estimates else 0.0 for a in analyses}


def device_of(models) -> str:
    p = next(models.original.model.parameters(), None)
    return "cpu" if p is None else p.device.type


def workload(models, data) -> Workload:
    """Of loaded models (parameters shared inside a model, tied embeddings, are counted once)."""
    params = max(sum(p.numel() for p in m.model.parameters()) for m in models.all().values())
    return Workload(len(models.all()), int(params), _items(data))


def workload_from_spec(spec, data) -> Workload | None:
    """Without loading a model: parameter counts from the safetensors headers, None when they cannot be read (pickle
    weights, a hub id not cached). A LoRA adapter is merged into a base of the original's size, so it adds none."""
    from unlearn_core.checkpoints.adapters import is_adapter_folder
    from unlearn_core.checkpoints.source import CheckpointError, resolve_source, safetensors_shapes

    sources = [spec.original, *(p for _, p in spec.unlearned), *([spec.retain_only] if spec.retain_only else [])]
    params = 0
    try:
        for source in sources:
            path = resolve_source(source)
            if is_adapter_folder(path):
                continue
            files = sorted(path.glob("*.safetensors"))
            if not files:
                return None
            params = max(params, sum(math.prod(shape) for f in files for shape, _ in safetensors_shapes(f).values()))
    except (CheckpointError, OSError):
        return None
    return Workload(len(sources), int(params), _items(data))


def _items(data) -> int:
    return len(data.forget) + len(data.retain) + len(data.holdout)
