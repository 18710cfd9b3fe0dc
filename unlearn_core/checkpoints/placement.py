"""A max_memory budget: checkpoints larger than one device, spread by accelerate's device_map="auto".

The budget is (device, bytes) pairs, GPU indices as strings ("0", "1") and "cpu", kept as a tuple so a
WorkspaceSpec stays hashable. It decides where weights go, never what they compute, so it is in no store key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MaxMemory = tuple[tuple[str, int], ...]  # (("0", bytes), ("1", bytes), ("cpu", bytes)), GPUs first

_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,  # decimal, as accelerate reads "GB"
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_FORM = "DEVICE=SIZE pairs, comma-separated, e.g. 0=70GiB,1=70GiB,cpu=100GiB (GPU index or cpu; KiB/MiB/GiB/TiB or " \
        "KB/MB/GB/TB)"


def parse_size(text: str) -> int:
    """Bytes of '70GiB', '80 GB', '512MiB'; a unit is required (a bare 70 could mean bytes or GiB)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a size like 70GiB, 512MiB or 80GB")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError(f"{text!r}: a memory budget must be more than 0 bytes")
    return n


def _device_key(key) -> str:
    k = str(key).strip().lower()
    k = k.removeprefix("cuda:")
    if k == "cpu" or (k.isdigit() and k == str(int(k))):
        return k
    raise ValueError(f"{key!r} is not a device here: use a GPU index (0, 1, ...) or cpu "
                     "(disk offload is not supported)")


def normalise_max_memory(value: str | Mapping | MaxMemory | None) -> MaxMemory | None:
    """A budget from the CLI text ('0=70GiB,cpu=100GiB'), a dict ({"0": "70GiB", "cpu": "100GiB"}) or pairs, as
    sorted (device, bytes) pairs (GPUs in index order, cpu last); ValueError saying what is wrong."""
    if value is None:
        return None
    if isinstance(value, str):
        pairs = []
        for part in value.split(","):
            dev, sep, size = part.partition("=")
            if not sep or not dev.strip() or not size.strip():
                raise ValueError(f"max_memory: expected {_FORM}; got {part.strip()!r} in {value!r}")
            pairs.append((dev, size))
    else:
        pairs = list(value.items() if isinstance(value, Mapping) else value)
    if not pairs:
        raise ValueError(f"max_memory: empty; expected {_FORM}")
    out: dict[str, int] = {}
    for dev, size in pairs:
        try:
            key = _device_key(dev)
            n = size if isinstance(size, int) and not isinstance(size, bool) else parse_size(size)
            if n <= 0:
                raise ValueError(f"{size!r}: a memory budget must be more than 0 bytes")
        except ValueError as exc:
            raise ValueError(f"max_memory: {exc}; expected {_FORM}") from exc
        if key in out:
            raise ValueError(f"max_memory: device {key} given twice; expected {_FORM}")
        out[key] = n
    return tuple(sorted(out.items(), key=lambda kv: (kv[0] == "cpu", int(kv[0]) if kv[0] != "cpu" else 0)))


def gpu_indices(budget: MaxMemory) -> list[int]:
    return [int(k) for k, _ in budget if k != "cpu"]


def accelerate_max_memory(budget: MaxMemory) -> dict[int | str, int]:
    """The dict accelerate's infer_auto_device_map reads: int keys for GPUs, "cpu"."""
    return {int(k) if k != "cpu" else k: n for k, n in budget}


def budget_bytes(budget: MaxMemory) -> int:
    return sum(n for _, n in budget)


def describe_budget(budget: MaxMemory) -> str:
    return ", ".join(f"{'cpu' if k == 'cpu' else 'GPU ' + k} {n / 2**30:.1f} GiB" for k, n in budget)


def footprint(model) -> dict[str, int]:
    """Bytes a loaded model holds per budget device ("0", "1", "cpu"); weights accelerate offloads (left on the meta
    device, kept in host memory) count as cpu."""
    out: dict[str, int] = {}
    for t in (*model.parameters(), *model.buffers()):
        key = str(t.device.index or 0) if t.device.type == "cuda" else "cpu"
        out[key] = out.get(key, 0) + t.numel() * t.element_size()
    return out


def remaining(budget: MaxMemory, models) -> MaxMemory:
    """The budget left after `models` (loaded already). accelerate places each checkpoint on its own, blind to the
    others, so each next one is given what is left, never the whole budget again."""
    used: dict[str, int] = {}
    for m in models:
        for k, n in footprint(m).items():
            used[k] = used.get(k, 0) + n
    return tuple((k, max(0, n - used.get(k, 0))) for k, n in budget)


def dispatch(model, budget: MaxMemory):
    """An already-built model (a LoRA adapter merged on the CPU) spread within the budget, as from_pretrained's
    device_map="auto" would place it."""
    from accelerate import dispatch_model, infer_auto_device_map

    device_map = infer_auto_device_map(model, max_memory=accelerate_max_memory(budget),
                                       no_split_module_classes=getattr(model, "_no_split_modules", None) or [],
                                       dtype=next(model.parameters()).dtype)
    if set(device_map.values()) <= {"cpu"}:
        return model  # nothing to spread: no hooks needed
    return dispatch_model(model, device_map)
