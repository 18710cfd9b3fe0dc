"""CPU thread policy: small models run on ONE intra-op thread.

For the demo lab's models (0.1-1M parameters) a forward pass is a handful of [B*T, 64..128] matmuls, where intra-op
thread synchronisation costs more than it saves, and two torch processes on the same cores (the app beside a lab
build or a test run) oversubscribe them and slow each other down by an order of magnitude: one thread gives up
about a quarter at best for a 50x worst case (benchmarks/MEASUREMENTS.md). Large models, and anything on CUDA, keep
the configured thread count.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import contextmanager

import torch

SMALL_MODEL_PARAMS = 20_000_000

# torch's thread count is process-wide, and the dashboard runs each browser session's analysis in its own thread.
# A save/restore per block raced: session A saved 2 and set 1, session B saved A's 1, A restored 2 while B still
# ran, and B finally "restored" 1, leaving the whole process on one thread. So the blocks share one reference
# count under a lock: the first small-model block saves the configured count and sets 1, the last one to finish
# restores it. While any small-model block runs, everything in the process (a large model too) sees 1 thread.
_LOCK = threading.Lock()
_USERS = 0
_SAVED: int | None = None


@contextmanager
def few_threads(n_params: int, limit: int = SMALL_MODEL_PARAMS):
    """One intra-op thread while the block runs if the work is at most `limit` parameters large (shared policy:
    overlapping blocks in other threads neither undo it early nor leave it behind)."""
    global _USERS, _SAVED
    if n_params > limit:
        yield
        return
    with _LOCK:
        if _USERS == 0:
            _SAVED = torch.get_num_threads()
        _USERS += 1
        torch.set_num_threads(1)  # in every entering thread: OpenMP keeps part of this setting per thread
    try:
        yield
    finally:
        with _LOCK:
            _USERS -= 1
            if _USERS == 0:
                torch.set_num_threads(_SAVED)
                _SAVED = None


def active_users() -> int:
    """How many few_threads blocks are running now (for tests and diagnostics)."""
    return _USERS


def model_params(models) -> int:
    """Largest CPU model in a ModelSet (0 when any model is on an accelerator: the policy is for CPU only)."""
    sizes = []
    for lm in models.all().values():
        if getattr(lm, "residency", None) is not None:  # loaded one at a time: too big to be "small" anyway
            sizes.append(lm.n_params)
            continue
        p = next(lm.model.parameters(), None)
        if p is not None and p.device.type != "cpu":
            return SMALL_MODEL_PARAMS + 1
        sizes.append(sum(x.numel() for x in lm.model.parameters()))
    return max(sizes, default=0)


# Loaded models are shared by every browser session (st.cache_resource), and analyses put forward hooks on them
# (noise, patching, capture) or swap weights: session B's plain forward pass through a block that session A has hooked
# would silently get A's noise. So analyses on one set of models run one at a time; keyed by the original model
# object (weakly: a released workspace frees its lock). Reentrant: the same thread may nest.
_MODEL_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


@contextmanager
def models_in_use(models, progress: Callable[[float, str], None] | None = None, poll_s: float = 0.5):
    """Exclusive use of a ModelSet's models while the block runs; waits (telling `progress`, which may raise to
    cancel the wait) while another thread's analysis holds them."""
    key = models.original.model
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.setdefault(key, threading.RLock())
    if not lock.acquire(blocking=False):
        while not lock.acquire(timeout=poll_s):
            if progress:
                progress(0.0, "waiting for another session's analysis on these checkpoints to finish")
    try:
        yield
    finally:
        lock.release()
