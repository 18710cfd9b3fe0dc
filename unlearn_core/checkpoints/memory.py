"""Where checkpoints go and whether they fit: the device and dtype, the memory estimate said before loading, the
refusal when they cannot fit, and how many stay resident at once."""

from __future__ import annotations

import torch

from unlearn_core.checkpoints.placement import MaxMemory, budget_bytes, describe_budget, gpu_indices
from unlearn_core.checkpoints.source import CheckpointError, CheckpointInfo


def pick_device(device: str = "auto", max_memory: MaxMemory | None = None) -> tuple[torch.device, torch.dtype]:
    """auto: CUDA in bf16 when present, else CPU in fp32 (bf16 matmuls are slow and lossy on most CPUs). With a
    max_memory budget: its first GPU (where inputs go), or the CPU when it names none."""
    if max_memory:
        gpus = gpu_indices(max_memory)
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus and device == "cpu":
            raise CheckpointError(f"device 'cpu' asked for, but max_memory gives GPU {gpus[0]} a budget")
        if not gpus and device.startswith("cuda"):
            raise CheckpointError("device 'cuda' asked for, but max_memory names no GPU (only cpu)")
        if any(g >= n for g in gpus):
            raise CheckpointError(f"max_memory names GPU {max(gpus)}, but this machine has {n} CUDA device(s)")
        device = f"cuda:{gpus[0]}" if gpus else "cpu"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("device 'cuda' asked for, but no CUDA device is available")
    dev = torch.device(device)
    return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def weight_bytes(infos: dict[str, CheckpointInfo], dtype: torch.dtype) -> dict[str, int]:
    """Bytes of each checkpoint's weights in `dtype` (params x bytes; a LoRA adapter counts its base)."""
    size = torch.tensor([], dtype=dtype).element_size()
    return {n: i.n_params * size for n, i in infos.items()}


def _gib(b: float) -> str:
    return f"{b / 2**30:.1f}" if b >= 2**30 else f"{b / 2**30:.3f}"


def memory_estimate(infos: dict[str, CheckpointInfo], device: torch.device, dtype: torch.dtype,
                    max_memory: MaxMemory | None = None, resident: int | None = None) -> str:
    """One line said before loading, so a user waits minutes only for what fits: checkpoints resident at once x
    params x dtype bytes, against free memory on the device or the max_memory budget. resident: how many stay in
    memory at once when fewer than all (plan_resident)."""
    sizes, n = weight_bytes(infos, dtype), len(infos)
    where = (f"spread over {describe_budget(max_memory)} (budget {_gib(budget_bytes(max_memory))} GiB)"
             if max_memory else f"on {device} ({_gib(available_bytes(device))} GiB free)")
    dt = str(dtype).replace("torch.", "")
    if resident is not None and resident < n:
        at_once = _gib(_need(list(sizes.values()), resident))
        return (f"loading {n} checkpoints one at a time (about {_gib(sum(sizes.values()))} GiB in {dt} for all) "
                f"{where}: at most {resident} resident, about {at_once} GiB with a working copy; the original stays, "
                "each other checkpoint is loaded when an analysis reaches it (slower: every analysis reads it again)")
    return f"loading {n} checkpoint{'s' if n != 1 else ''}: about {_gib(sum(sizes.values()))} GiB in {dt} {where}"


def check_memory(infos: dict[str, CheckpointInfo], device: torch.device, dtype: torch.dtype,
                 headroom: float = 0.8, overhead: float = 1.2, max_memory: MaxMemory | None = None) -> int:
    """Estimated bytes for all weights (+20% for activations) against `headroom` of free memory, or against the
    whole max_memory budget when one is given (the user sized it); refuses early."""
    per = {n: int(b * overhead) for n, b in weight_bytes(infos, dtype).items()}
    need = sum(per.values())
    have, room = (budget_bytes(max_memory), 1.0) if max_memory else (available_bytes(device), headroom)
    if need > room * have:
        detail = ", ".join(f"{n} {b / 2**30:.1f} GiB" for n, b in per.items())
        where = (f"in the max_memory budget ({describe_budget(max_memory)})" if max_memory else f"on {device}")
        fix = ("Raise the budget (CLI: --max-memory), load fewer checkpoints at once" if max_memory else
               "Load fewer checkpoints at once, spread them over devices (CLI: --max-memory)")
        raise CheckpointError(
            f"not enough memory {where}: the {len(infos)} checkpoints need about {need / 2**30:.1f} GiB "
            f"({detail}) in {str(dtype).replace('torch.', '')}, but only {have / 2**30:.1f} GiB is "
            f"{'budgeted' if max_memory else 'free'}. {fix}, or use a machine with more memory."
        )
    return need


def _need(per: list[int], k: int) -> int:
    """Bytes with the k largest checkpoints resident, plus one working copy of the largest when not all are: the
    copy relearning fine-tunes and quantization rounds is made while its checkpoint is resident."""
    top = sorted(per, reverse=True)
    return sum(top[:k]) + (top[0] if k < len(top) else 0)


def plan_resident(infos: dict[str, CheckpointInfo], device: torch.device, dtype: torch.dtype,
                  max_memory: MaxMemory | None = None, resident: int | None = None, headroom: float = 0.8,
                  overhead: float = 1.2) -> int:
    """How many checkpoints stay in memory at once. resident=None: all of them when they fit (check_memory), else
    as many as fit, at least 2 (the original and the checkpoint an analysis is on); the others are loaded when an
    analysis reaches them (checkpoints.residency). CheckpointError when even two do not fit, or when `resident`
    asks for more than fits."""
    n = len(infos)
    if resident is not None and (isinstance(resident, bool) or not isinstance(resident, int) or resident < 2):
        raise CheckpointError(f"resident must be an int >= 2 (the original and one checkpoint), got {resident!r}")
    k = n if resident is None else min(resident, n)
    if k == n:
        try:
            check_memory(infos, device, dtype, headroom, overhead, max_memory)
            return n
        except CheckpointError as exc:
            if resident is not None:
                raise
            refused = exc
    per = [int(b * overhead) for b in weight_bytes(infos, dtype).values()]
    have, room = (budget_bytes(max_memory), 1.0) if max_memory else (available_bytes(device), headroom)
    fits = [j for j in range(2, k + 1) if _need(per, j) <= room * have]
    if resident is not None and resident < n:
        if k not in fits:
            raise CheckpointError(
                f"not enough memory for {k} checkpoints at once: about {_need(per, k) / 2**30:.1f} GiB (the {k} "
                f"largest and one working copy) in {str(dtype).replace('torch.', '')}, but only "
                f"{have / 2**30:.1f} GiB is {'budgeted' if max_memory else 'free'}. Keep fewer resident "
                "(CLI: --resident), or use a machine with more memory.")
        return k
    if not fits:
        raise CheckpointError(f"{refused} Even one checkpoint at a time beside the original (about "
                              f"{_need(per, 2) / 2**30:.1f} GiB with a working copy) does not fit.") from refused
    return max(fits)
