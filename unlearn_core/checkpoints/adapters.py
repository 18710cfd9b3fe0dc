"""PEFT LoRA adapter folders as checkpoints: most unlearning runs (open-unlearning, papers) save an adapter, not a
full model, so an adapter is accepted wherever a checkpoint folder is.

An adapter is inspected like a full folder, before any weights are read: its base is resolved locally (the
adapter's `base_model_name_or_path` if that is a local folder or a hub id in the local Hugging Face cache, else the
workspace's original; nothing is ever downloaded), every LoRA factor's shape is checked against the base's
safetensors header and a tokenizer shipped with the adapter against the base's vocabulary. Loading merges the
adapter into a fresh copy of the base in memory (`merge_and_unload`), so every analysis runs on an ordinary model.
Its results-store hash covers the adapter files AND the base's hash: the same adapter on another base is another
model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unlearn_core.checkpoints.source import (
    AdapterInfo,
    CheckpointError,
    CheckpointInfo,
    resolve_source,
    safetensors_shapes,
)
from unlearn_core.store.hashing import hash_adapter, hash_checkpoint

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
_PREFIX = "base_model.model."
# saved LoRA tensor suffix -> which factor: A [r, fan_in], B [fan_out, r]; embedding A [r, vocab], B [dim, r]
_FACTORS = ((".lora_A.weight", "A"), (".lora_B.weight", "B"), (".lora_embedding_A", "eA"), (".lora_embedding_B", "eB"))



def is_adapter_folder(path: str | Path) -> bool:
    """A PEFT adapter folder: adapter_config.json and no full model's weights beside it (a config.json of the base
    saved next to the adapter does not make it a full model)."""
    p = Path(path)
    if not (p.is_dir() and (p / ADAPTER_CONFIG).is_file()):
        return False
    full = [f for f in p.iterdir() if f.name.startswith(("model", "pytorch_model")) and
            f.name.endswith((".safetensors", ".bin", ".index.json"))]
    return not full


def describe(info: CheckpointInfo) -> str:
    """One line for the workspace page and the CLI: what kind of checkpoint this is."""
    if info.adapter is not None:
        return info.adapter.describe()
    return f"{info.model_type} model, {info.n_params / 1e6:.1f}M parameters"


def read_adapter_config(path: Path) -> dict:
    try:
        cfg = json.loads((path / ADAPTER_CONFIG).read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path / ADAPTER_CONFIG}: invalid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path / ADAPTER_CONFIG}: not a JSON object")
    kind = str(cfg.get("peft_type", "")).upper()
    if kind != "LORA":
        raise CheckpointError(f"{path}: a PEFT adapter of type {cfg.get('peft_type')!r}; only LoRA adapters can be "
                              "audited (they merge into the base model's weights)")
    if not isinstance(cfg.get("r"), int) or cfg["r"] <= 0:
        raise CheckpointError(f"{path / ADAPTER_CONFIG}: LoRA rank r must be a positive integer, got {cfg.get('r')!r}")
    return cfg


def resolve_base(cfg: dict, adapter: Path, original: str | Path | None) -> tuple[Path, str, str]:
    """(base folder, label, where from). The adapter's own base when it is here (a folder, relative to the working
    directory or to the adapter, or a cached hub id); else the workspace's original. Never downloads."""
    from unlearn_core.checkpoints.guard import PathOutsideRoot, checkpoint_source, workspace_root

    name = cfg.get("base_model_name_or_path")
    tried = []
    if isinstance(name, str) and name.strip():
        root = workspace_root()
        candidates = [name] if Path(name).expanduser().is_absolute() else [name, str(adapter / name)]
        for cand in candidates:
            try:
                src = checkpoint_source(cand, root, "adapter base") if root is not None else cand
                base = resolve_source(src)
            except (CheckpointError, PathOutsideRoot) as exc:
                tried.append(str(exc))
                continue
            if is_adapter_folder(base):
                raise CheckpointError(f"{adapter}: its base {name!r} is itself an adapter; merge it into a full "
                                      "model first")
            return base, name, "adapter config"
    if original is not None:
        base = resolve_source(original)
        label = f"the original ({base.name})"
        return base, label, "original"
    raise CheckpointError(f"{adapter}: its base model {name!r} is not available locally "
                          f"({'; '.join(tried) or 'no base_model_name_or_path'}) and no original was given to "
                          "merge it into. Give the base as the original checkpoint, or download it first.")


def _adapter_shapes(path: Path, allow_pickle: bool) -> tuple[dict[str, tuple[int, ...]], str]:
    st, pk = path / ADAPTER_WEIGHTS, path / ADAPTER_PICKLE
    if st.is_file():
        return {k: s for k, (s, _d) in safetensors_shapes(st).items()}, "safetensors"
    if pk.is_file():
        if not allow_pickle:
            raise CheckpointError(
                f"{path}: the adapter weights are a pickle file ({ADAPTER_PICKLE}) only. Loading pickle can run "
                "arbitrary code; save the adapter with safe_serialization=True, or opt in with allow_pickle=True "
                "(CLI: --allow-pickle) if you trust the source.")
        state = torch.load(pk, map_location="cpu", weights_only=True)
        return {k: tuple(v.shape) for k, v in state.items()}, "pickle"
    raise CheckpointError(f"{path}: {ADAPTER_CONFIG} but no adapter weights ({ADAPTER_WEIGHTS})")


def _base_key(want: str, base_shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The base's tensor name for an adapter's (saved names may or may not carry the model's prefix)."""
    if want in base_shapes:
        return want
    hits = [k for k in base_shapes if k.endswith("." + want) or want.endswith("." + k)]
    return hits[0] if len(hits) == 1 else None


def shape_problems(adapter_shapes: dict[str, tuple[int, ...]], cfg: dict,
                   base_shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Every LoRA factor (and fully saved module) that does not fit the base, in words."""
    out = []
    fan_in_fan_out = bool(cfg.get("fan_in_fan_out"))
    for key, shape in sorted(adapter_shapes.items()):
        name = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
        factor = next(((name[: -len(tag)], side) for tag, side in _FACTORS if name.endswith(tag)), None)
        if factor is None:
            if ".lora_" in name:
                continue  # biases, magnitudes (DoRA): their size follows the factors checked here
            full = _base_key(name.replace(".modules_to_save.default", ""), base_shapes)
            if full is None or base_shapes[full] != shape:
                out.append(f"saved module {name} {list(shape)} does not match the base "
                           f"({list(base_shapes[full]) if full else 'no such tensor'})")
            continue
        module, side = factor
        bkey = _base_key(module + ".weight", base_shapes)
        if bkey is None:
            out.append(f"adapts {module}, which the base does not have")
            continue
        w = base_shapes[bkey]
        if len(w) != 2 or len(shape) != 2:
            out.append(f"{module}: factor {side} {list(shape)} on a base weight of shape {list(w)}")
            continue
        if side in ("eA", "eB"):  # embedding: weight [vocab, dim], A [r, vocab], B [dim, r]
            ok = shape[1] == w[0] if side == "eA" else shape[0] == w[1]
        else:
            fan_in, fan_out = (w[0], w[1]) if fan_in_fan_out else (w[1], w[0])
            ok = shape[1] == fan_in if side == "A" else shape[0] == fan_out
        if not ok:
            out.append(f"{module}: LoRA factor {side.lstrip('e')} has shape {list(shape)}, which does not fit the "
                       f"base weight {list(w)}")
    return out


def _tokenizer_vocab(path: Path) -> dict[str, int] | None:
    """The vocabulary of a tokenizer saved with the adapter, or None when it ships none (the base's is used)."""
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")):
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path).get_vocab()
    except Exception as exc:  # tokenizer formats vary; report what the library said
        raise CheckpointError(f"{path}: cannot load the adapter's tokenizer ({type(exc).__name__}: {exc})") from exc


def inspect_adapter(path: Path, cfg: dict, resolved_base: tuple[Path, str, str], base: CheckpointInfo,
                    allow_pickle: bool = False) -> CheckpointInfo:
    """An adapter against its already inspected base (cfg: read_adapter_config; resolved_base: resolve_base), from
    headers and configs; CheckpointError naming what does not fit."""
    shapes, fmt = _adapter_shapes(path, allow_pickle)
    base_path, label, base_from = resolved_base
    problems = shape_problems(shapes, cfg, base.shapes)
    vocab = _tokenizer_vocab(path)
    if vocab is not None and vocab != base.vocab:
        problems.append(f"its tokenizer has {len(vocab)} tokens, the base's {len(base.vocab)} "
                        f"({len(set(vocab) ^ set(base.vocab))} not in both)")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path}: LoRA adapter does not fit its base {base_path} ({base_from}): "
                              + "; ".join(problems[:3]) + more + ". Give the model the adapter was trained on.")
    n_adapter = sum(int(torch.Size(s).numel()) for s in shapes.values())
    targets = cfg.get("target_modules") or ()
    info = AdapterInfo(str(path), str(base_path), label, base_from, int(cfg["r"]), float(cfg.get("lora_alpha", 0)),
                       tuple([targets] if isinstance(targets, str) else targets), n_adapter, fmt)
    # the merged model has the base's tensors; the memory estimate counts the adapter on top (both are held while
    # merging)
    return CheckpointInfo(str(path), base.model_type, base.architectures, base.shapes, base.n_params + n_adapter,
                          base.vocab, base.has_remote_code, base.weight_format, adapter=info)


def adapter_hash(info: AdapterInfo) -> str:
    return hash_adapter(info.path, hash_checkpoint(info.base_path))


def checkpoint_hash(source: str | Path, original: str | Path | None = None) -> str:
    """The results-store hash of a checkpoint folder or adapter, from files alone (what LoadedModel.hash holds)."""
    path = resolve_source(source)
    if is_adapter_folder(path):
        base, _label, _from = resolve_base(read_adapter_config(path), path, original)
        return hash_adapter(path, hash_checkpoint(base))
    return hash_checkpoint(path)


def tokenizer_dir(a: AdapterInfo) -> str:
    """The adapter folder when it ships a tokenizer, else its base's."""
    return a.path if _tokenizer_vocab(Path(a.path)) is not None else a.base_path


def load_merged(info: CheckpointInfo, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False,
                max_memory=None):
    """(merged model, tokenizer): the base loaded fresh, the adapter merged into it in memory; with a max_memory
    budget (placement.MaxMemory) merged on the CPU, then spread within it (peft merges plain modules only)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a = info.adapter
    base = AutoModelForCausalLM.from_pretrained(a.base_path, dtype=dtype, use_safetensors=info.weight_format
                                                == "safetensors", trust_remote_code=trust_remote_code)
    try:
        merged = PeftModel.from_pretrained(base, a.path, is_trainable=False).merge_and_unload()
    except Exception as exc:  # peft raises several types for a mismatch the header check could not see
        raise CheckpointError(f"{a.path}: cannot apply the LoRA adapter to {a.base_path} "
                              f"({type(exc).__name__}: {exc})") from exc
    tok = AutoTokenizer.from_pretrained(tokenizer_dir(a), trust_remote_code=trust_remote_code)
    if max_memory:
        from unlearn_core.checkpoints.placement import dispatch

        return dispatch(merged, max_memory).eval(), tok
    return merged.to(device).eval(), tok


__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "AdapterInfo", "adapter_hash", "checkpoint_hash",
           "describe", "inspect_adapter", "is_adapter_folder", "load_merged", "resolve_base", "shape_problems",
           "tokenizer_dir"]
