"""Checkpoints loaded when an analysis reaches them: audits whose checkpoints do not all fit in memory at once.

Nine 7B checkpoints in bf16 are 126 GB; one GPU holds five. Every analysis walks the checkpoints one after another
(against the original), so at most a few need to be in memory at any moment: the original stays (every analysis
compares against it), the others are loaded on first use and one is released when a new one needs its room. The
analyses are unchanged and see the same ModelSet; only `LoadedModel.model` loads.

Which one is released: the most recently used (MRU), not the least. Every analysis walks the checkpoints in the
same order, once or twice, and the next walk starts again at the first: under LRU a cyclic walk over more
checkpoints than fit misses on every access (each load evicts exactly the one the next walk needs first), while
MRU keeps the first ones of the walk and churns one slot, which is what evicting the one whose next use is furthest
away (Belady's optimum) does on a cyclic walk. Measured on the tiny lab's 12 analyses (9 checkpoints): see
benchmarks/MEASUREMENTS.md.

A released model's weights are freed at once (moved to the meta device), even where an analysis still holds the
module: the memory bound holds, and a forward pass through a released model raises an error that names it instead
of quietly computing on garbage.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from unlearn_core.model.hooks import refuse_forward
from unlearn_core.types import LoadedModel

Loader = Callable[[str, list], Any]  # (checkpoint name, models resident now) -> a loaded model in eval mode


POLICIES = ("mru", "lru")


class ReleasedModelError(RuntimeError):
    """A model released by one-at-a-time loading was used after its turn."""


class Residency:
    """At most `capacity` checkpoints in memory; `pinned` ones are never released. Thread-safe (the dashboard's
    sessions share one ModelSet; threads.models_in_use already serialises analyses on it)."""

    def __init__(self, capacity: int, loader: Loader, pinned: tuple[str, ...] = (), policy: str = "mru"):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < len(pinned) + 1:
            raise ValueError(f"capacity must be an int >= {len(pinned) + 1} (the pinned checkpoints and one more), "
                             f"got {capacity!r}")
        self.capacity, self.pinned, self.policy = capacity, tuple(pinned), policy
        self._loader = loader
        self._resident: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.loads: dict[str, int] = {}
        self.peak = 0

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._resident)

    def get(self, name: str):
        with self._lock:
            if name in self._resident:
                self._resident.move_to_end(name)
                return self._resident[name]
            while len(self._resident) >= self.capacity:
                unpinned = [n for n in self._resident if n not in self.pinned]  # least recently used first
                if not unpinned:
                    break
                self.release(unpinned[-1] if self.policy == "mru" else unpinned[0])
            model = self._loader(name, list(self._resident.values()))
            self._resident[name] = model
            self.loads[name] = self.loads.get(name, 0) + 1
            self.peak = max(self.peak, len(self._resident))
            return model

    def release(self, name: str) -> None:
        with self._lock:
            model = self._resident.pop(name, None)
        if model is None:
            return
        _free(model, name)
        del model
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _free(model, name: str) -> None:
    """Weights to the meta device (their memory is freed even if the module is still referenced), and a pre-hook
    that says what happened when the module is run anyway."""

    refuse_forward(model, lambda: ReleasedModelError(
        f"checkpoint {name!r} was released from memory (one checkpoint at a time: it did not fit beside the "
        "others) and used afterwards; read LoadedModel.model again where it is needed instead of keeping the module"))
    model.to_empty(device="meta")


class OnDemandModel(LoadedModel):
    """A LoadedModel whose `model` is loaded on access through a Residency. Name, role, tokenizer, path and hash
    are known without the weights, so results-store keys and labels never load anything."""

    def __init__(self, name: str, role: str, tokenizer: Any, path: str, hash: str, residency: Residency,
                 n_params: int):
        self.name, self.role, self.tokenizer, self.path, self.hash = name, role, tokenizer, path, hash
        self.residency, self.n_params = residency, n_params
        self.__post_init__()

    @property
    def model(self):
        return self.residency.get(self.name)

    def __repr__(self) -> str:
        return f"OnDemandModel(name={self.name!r}, role={self.role!r}, path={self.path!r})"


class DeferredSet:
    """A whole ModelSet loaded once, by the first access to any of its checkpoints' weights or tokenizers."""

    def __init__(self, load: Callable[[], Any], placement: dict[str, object]):
        self._load, self._set, self._lock = load, None, threading.Lock()
        self.placement = placement  # where the models will load (device, dtype): provenance before any load

    @property
    def loaded(self) -> bool:
        return self._set is not None

    def get(self):
        with self._lock:
            if self._set is None:
                self._set = self._load()
            return self._set


class DeferredModel(LoadedModel):
    """A LoadedModel known from its folder (name, role, path, content hash, size, depth) whose weights load, with
    its whole set, when something reads `model` or `tokenizer`: an audit the results store already holds in full
    reads every number back without loading a checkpoint (at 7B, minutes saved per run)."""

    def __init__(self, name: str, role: str, path: str, hash: str, n_params: int, n_layers: int,
                 deferred: DeferredSet):
        self.name, self.role, self.path, self.hash = name, role, path, hash
        self.n_params, self.n_layers, self.deferred = n_params, n_layers, deferred
        self.__post_init__()

    def _real(self) -> LoadedModel:
        real = self.deferred.get().all()[self.name]
        if real.hash != self.hash:
            raise RuntimeError(f"checkpoint {self.name!r} changed on disk between planning and loading")
        return real

    @property
    def model(self):
        return self._real().model

    @property
    def tokenizer(self):
        return self._real().tokenizer

    @property
    def residency(self):  # the loaded set's one-at-a-time loading, when it has one (threads.model_params)
        return getattr(self._real(), "residency", None)

    def __repr__(self) -> str:
        return f"DeferredModel(name={self.name!r}, role={self.role!r}, loaded={self.deferred.loaded})"
