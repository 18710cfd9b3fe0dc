"""Inspection before loading: a full model folder or a LoRA adapter (the base first, then the adapter against it),
and the compatibility of an audit's checkpoints, from configs, tokenizers and safetensors headers only."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unlearn_core.checkpoints.adapters import inspect_adapter, is_adapter_folder, read_adapter_config, resolve_base
from unlearn_core.checkpoints.series_layout import is_series_folder
from unlearn_core.checkpoints.source import (
    PICKLE_SUFFIXES,
    TOKENIZER_FILES,
    CheckpointError,
    CheckpointInfo,
    IncompatibleCheckpoints,
    resolve_source,
    safetensors_shapes,
)


def inspect_checkpoint(source: str | Path, allow_pickle: bool = False,
                       original: str | Path | None = None) -> CheckpointInfo:
    """original: the base a LoRA adapter folder is merged into when its own base is not here, and the tokenizer of
    a folder that ships none (Trainer checkpoint-N/ folders often hold weights only)."""
    path = resolve_source(source)
    if is_adapter_folder(path):  # the base first, then the adapter against it
        cfg = read_adapter_config(path)
        base = resolve_base(cfg, path, original)
        return inspect_adapter(path, cfg, base, inspect_checkpoint(base[0], allow_pickle), allow_pickle)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        if is_series_folder(path):
            raise CheckpointError(f"{path}: a series of checkpoint-N/ folders, not one checkpoint; audit it as a "
                                  "series (CLI: --series NAME=DIR; the Training dynamics page)")
        raise CheckpointError(f"{path}: no config.json; this is not a Hugging Face model folder")
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{cfg_file}: invalid JSON ({exc})") from exc
    st_files = sorted(path.glob("*.safetensors"))
    pickle_files = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    shapes: dict[str, tuple[int, ...]] = {}
    n_params = 0
    if st_files:
        for f in st_files:
            for k, (shape, _dtype) in safetensors_shapes(f).items():
                shapes[k] = shape
                n_params += int(torch.Size(shape).numel())
        fmt = "safetensors"
    elif pickle_files:
        if not allow_pickle:
            names = ", ".join(p.name for p in pickle_files[:3])
            raise CheckpointError(
                f"{path}: weights are pickle files only ({names}). Loading pickle can run arbitrary code; convert "
                "them to safetensors, or opt in with allow_pickle=True (CLI: --allow-pickle) if you trust the source."
            )
        fmt = "pickle"
    else:
        raise CheckpointError(f"{path}: no weight files (*.safetensors) found")
    vocab = {}
    tok_path = path
    if original is not None and not any((path / f).is_file() for f in TOKENIZER_FILES):
        tok_path = resolve_source(original)
    try:
        from transformers import AutoTokenizer

        vocab = AutoTokenizer.from_pretrained(tok_path).get_vocab()
    except Exception as exc:  # tokenizer formats vary; report what the library said
        raise CheckpointError(f"{tok_path}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from exc
    return CheckpointInfo(str(path), cfg.get("model_type", "?"), tuple(cfg.get("architectures") or ()), shapes,
                          n_params, vocab, bool(cfg.get("auto_map")), fmt,
                          tokenizer_path=None if tok_path == path else str(tok_path))


def compatibility_problems(ref: CheckpointInfo, other: CheckpointInfo) -> list[str]:
    """Every difference that makes a side-by-side comparison meaningless, in words."""
    out = []
    if ref.architectures != other.architectures or ref.model_type != other.model_type:
        out.append(f"architecture differs: {ref.model_type} {list(ref.architectures)} vs "
                   f"{other.model_type} {list(other.architectures)}")
    if ref.vocab != other.vocab:
        only_a = len(set(ref.vocab) - set(other.vocab))
        only_b = len(set(other.vocab) - set(ref.vocab))
        moved = sum(1 for t, i in ref.vocab.items() if t in other.vocab and other.vocab[t] != i)
        out.append(f"tokenizer vocabulary differs: {len(ref.vocab)} vs {len(other.vocab)} tokens "
                   f"({only_a} only in the first, {only_b} only in the second, {moved} with other ids)")
    if ref.shapes and other.shapes:
        missing = sorted(set(ref.shapes) ^ set(other.shapes))
        if missing:
            out.append(f"parameter names differ: {len(missing)} not in both (e.g. {missing[0]})")
        diff = [k for k in ref.shapes if k in other.shapes and ref.shapes[k] != other.shapes[k]]
        if diff:
            k = diff[0]
            out.append(f"parameter shapes differ in {len(diff)} tensors (e.g. {k}: {list(ref.shapes[k])} vs "
                       f"{list(other.shapes[k])})")
    return out


def check_compatible(ref: CheckpointInfo, others: dict[str, CheckpointInfo]) -> None:
    msgs = [f"{name} ({info.path}) vs original: " + "; ".join(p)
            for name, info in others.items() if (p := compatibility_problems(ref, info))]
    if msgs:
        raise IncompatibleCheckpoints("checkpoints are not comparable:\n" + "\n".join(msgs))
