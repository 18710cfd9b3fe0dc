"""Architecture-neutral access to decoder blocks, MLP output projections, final norm and unembedding.

Resolved through the model's own modules (GPT-2 `transformer.h[i].mlp.c_proj`, Llama/Mistral/Qwen
`model.layers[i].mlp.down_proj`, GPT-NeoX `gpt_neox.layers[i].mlp.dense_4h_to_h`, ...), never by one family's names.
"""

from __future__ import annotations

import torch
from torch import nn

_LAYER_PATHS = ("transformer.h", "model.layers", "model.decoder.layers", "gpt_neox.layers", "transformer.layers",
                "model.language_model.layers")
_MLP_OUT_NAMES = ("c_proj", "down_proj", "dense_4h_to_h", "fc2", "fc_out", "w2")
_FINAL_NORM_PATHS = ("transformer.ln_f", "model.norm", "model.decoder.final_layer_norm", "gpt_neox.final_layer_norm",
                     "model.language_model.norm")


class UnsupportedArchitecture(ValueError):
    pass


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model) -> nn.ModuleList:
    for path in _LAYER_PATHS:
        layers = _get(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers):
            return layers
    raise UnsupportedArchitecture(
        f"cannot find the decoder blocks of {type(model).__name__}: looked for {', '.join(_LAYER_PATHS)}")


def n_layers(model) -> int:
    return len(decoder_layers(model))


def n_layers_from_config(cfg: dict) -> int:
    """Decoder blocks from a config.json dict (no model loaded): HF families name the field differently."""
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        v = cfg.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    text = cfg.get("text_config")
    if isinstance(text, dict):
        return n_layers_from_config(text)
    raise UnsupportedArchitecture(f"config.json of model_type {cfg.get('model_type')!r} names no layer count")


def mlp_out_proj(model, layer: int) -> nn.Module:
    block = decoder_layers(model)[layer]
    mlp = getattr(block, "mlp", None) or getattr(block, "feed_forward", None)
    for name in _MLP_OUT_NAMES:
        mod = getattr(mlp, name, None) if mlp is not None else None
        if mod is not None:
            return mod
    raise UnsupportedArchitecture(f"cannot find the MLP output projection of block {layer} ({type(block).__name__})")


def mlp_out_matrix(model, layer: int) -> torch.Tensor:
    """[d_model, d_mlp]: column j is the vector neuron j writes into the residual stream (a concept vector).

    GPT-2's Conv1D stores weight as [in, out] = [d_mlp, d_model]; nn.Linear stores [out, in] = [d_model, d_mlp].
    """
    mod = mlp_out_proj(model, layer)
    w = mod.weight
    return w.T if type(mod).__name__ == "Conv1D" else w


def mlp_module(model, layer: int) -> nn.Module:
    block = decoder_layers(model)[layer]
    mlp = getattr(block, "mlp", None) or getattr(block, "feed_forward", None)
    if mlp is None:
        raise UnsupportedArchitecture(f"block {layer} ({type(block).__name__}) has no mlp")
    return mlp


def final_norm(model) -> nn.Module | None:
    for path in _FINAL_NORM_PATHS:
        mod = _get(model, path)
        if isinstance(mod, nn.Module):
            return mod
    return None


def unembedding(model) -> torch.Tensor:
    """[vocab, d_model] output embedding."""
    return model.get_output_embeddings().weight


def is_tied(model) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and inp is not None and out.weight.data_ptr() == inp.weight.data_ptr()


def head_parameters(model) -> list[nn.Parameter]:
    """Parameters of the last block, the final norm and the output head (the suppressed_head control's scope)."""
    params = list(decoder_layers(model)[-1].parameters())
    norm = final_norm(model)
    if norm is not None:
        params += list(norm.parameters())
    params += list(model.get_output_embeddings().parameters())
    return params


def fuse_activations(model: nn.Module) -> int:
    """Replace Python-composed tanh-GELU modules (GPT-2's "gelu_new", "gelu_fast") by transformers' GELUTanh, the
    same function as one fused kernel; returns how many were replaced. GPT-2's activation ran as six elementwise
    ops with an intermediate tensor each: on the demo lab it was a quarter of every forward and backward
    (attribution 21.1 s -> 15.2 s); the outputs differ only by float rounding (transformers says the same).
    GPT-2's MLPs then also fuse their input projection with that GELU in inference (unlearn_core.model.fused_mlp)."""
    from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(module, name, GELUTanh())
                replaced += 1
    if any(type(m).__name__ == "GPT2MLP" for m in model.modules()):  # GPT-2's module is only imported for GPT-2
        from unlearn_core.model.fused_mlp import fuse_mlps

        fuse_mlps(model)
    return replaced
