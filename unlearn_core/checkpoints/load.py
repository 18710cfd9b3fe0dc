"""Safe loading of an inspected checkpoint: safetensors unless the user opted in, no remote code by default, weights
frozen in eval mode with fused activations."""

from __future__ import annotations

import torch

from unlearn_core.checkpoints.placement import MaxMemory, accelerate_max_memory
from unlearn_core.checkpoints.source import CheckpointError, CheckpointInfo
from unlearn_core.model import arch
from unlearn_core.store.hashing import hash_checkpoint
from unlearn_core.types import LoadedModel


def load_model(info: CheckpointInfo, name: str, role: str, device: torch.device, dtype: torch.dtype,
               trust_remote_code: bool = False, max_memory: MaxMemory | None = None) -> LoadedModel:
    """max_memory: spread the weights with accelerate's device_map="auto" within that budget instead of moving
    the whole model to `device` (a checkpoint larger than one device); inputs then go to scoring.input_device."""
    _refuse_remote_code(info, trust_remote_code)
    digest = checkpoint_digest(info)
    model = load_weights(info, device, dtype, trust_remote_code, max_memory)
    return LoadedModel(name, role, model, load_tokenizer(info, trust_remote_code), info.path, digest)


def checkpoint_digest(info: CheckpointInfo) -> str:
    """The results-store key of a checkpoint's weights (a LoRA adapter is hashed with its base's hash)."""
    if info.adapter is not None:
        from unlearn_core.checkpoints.adapters import adapter_hash

        return adapter_hash(info.adapter)
    return hash_checkpoint(info.path)


def _refuse_remote_code(info: CheckpointInfo, trust_remote_code: bool) -> None:
    if info.has_remote_code and not trust_remote_code:
        raise CheckpointError(f"{info.path}: the config asks for custom code (auto_map); refusing to run it. "
                              "Opt in with trust_remote_code=True (CLI: --trust-remote-code) if you trust it.")


def load_tokenizer(info: CheckpointInfo, trust_remote_code: bool = False):
    """The checkpoint's tokenizer (an adapter's own, else its base's), with a pad token."""
    from transformers import AutoTokenizer

    _refuse_remote_code(info, trust_remote_code)
    if info.adapter is not None:
        from unlearn_core.checkpoints.adapters import tokenizer_dir

        src = tokenizer_dir(info.adapter)
    else:
        src = info.tokenizer_path or info.path
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_weights(info: CheckpointInfo, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False,
                 max_memory: MaxMemory | None = None):
    """The model in eval mode, frozen, with fused activations; placed on `device` or spread within max_memory."""
    from transformers import AutoModelForCausalLM

    _refuse_remote_code(info, trust_remote_code)
    if info.adapter is not None:
        from unlearn_core.checkpoints.adapters import load_merged

        model, _tok = load_merged(info, device, dtype, trust_remote_code, max_memory)
    else:
        placed = {"device_map": "auto", "max_memory": accelerate_max_memory(max_memory)} if max_memory else {}
        model = AutoModelForCausalLM.from_pretrained(
            info.path, dtype=dtype, use_safetensors=info.weight_format == "safetensors",
            trust_remote_code=trust_remote_code, **placed,
        )
        model = (model if max_memory else model.to(device)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    arch.fuse_activations(model)
    return model
