"""CPU thread policy: small models run on ONE intra-op thread.

For the demo lab's models (0.1-1M parameters) a forward pass is a handful of [B*T, 64..128] matmuls, where intra-op
thread synchronisation costs more than it saves, and two torch processes on the same cores (the app beside a lab
build or a test run) oversubscribe them and slow each other down by an order of magnitude. Measured with
benchmarks/restoration.py on the tiny lab (2 cores): while a lab build ran, 3486 ms on 2 threads vs 68 ms on 1;
idle, 50 ms on 2 threads vs 67 ms on 1. One thread gives up ~25% at best for a 50x worst case. Large models, and
anything on CUDA, keep the configured thread count.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

SMALL_MODEL_PARAMS = 20_000_000


@contextmanager
def few_threads(n_params: int, limit: int = SMALL_MODEL_PARAMS):
    """One intra-op thread while the block runs if the work is at most `limit` parameters large."""
    before = torch.get_num_threads()
    if n_params <= limit:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def model_params(models) -> int:
    """Largest CPU model in a ModelSet (0 when any model is on an accelerator: the policy is for CPU only)."""
    sizes = []
    for lm in models.all().values():
        p = next(lm.model.parameters(), None)
        if p is not None and p.device.type != "cpu":
            return SMALL_MODEL_PARAMS + 1
        sizes.append(sum(x.numel() for x in lm.model.parameters()))
    return max(sizes, default=0)
