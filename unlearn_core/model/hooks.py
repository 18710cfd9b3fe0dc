"""Every hook site of a model, as context managers whose hooks are removed on exit: a decoder block's output,
the MLP's hidden activation (the input of its output projection) and its output, the token embedding, and a module
of the caller's choosing. Nothing outside model/ registers a hook: an analysis says "edit here, score there" with
these (TransformerLens' hook points, captum's _forward_layer_eval), architecture-neutral through model.arch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from unlearn_core.model.arch import decoder_layers, mlp_out_proj
from unlearn_core.model.scoring import input_device, kept_logits


@contextmanager
def on_output(module, fn: Callable) -> Iterator[None]:
    """While active, fn(module, args, output) runs after `module`; an output it returns replaces the module's."""
    handle = module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def on_input(module, fn: Callable) -> Iterator[None]:
    """While active, fn(module, args) runs before `module`; a tuple of args it returns replaces the module's."""
    handle = module.register_forward_pre_hook(fn)
    try:
        yield
    finally:
        handle.remove()


def refuse_forward(module, error: Callable[[], Exception]) -> None:
    """From now on, running `module` raises error(): for a module whose weights are gone (never removed)."""

    def refuse(_module, _args):
        raise error()

    module.register_forward_pre_hook(refuse)


@contextmanager
def mlp_out(model, layer: int, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """fn(mlp hidden [B, T, d_mlp], mlp output [B, T, d_model]) at block `layer`'s MLP output projection; a tensor it
    returns replaces the MLP's output."""
    with on_output(mlp_out_proj(model, layer), lambda _m, args, out: fn(args[0], out)):
        yield


@contextmanager
def mlp_hidden(model, layer: int, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """fn(mlp hidden [B, T, d_mlp]) before block `layer`'s MLP output projection reads it; a tensor it returns
    replaces the hidden activation (the concept vectors' coefficients)."""

    def pre(_m, args):
        new = fn(args[0])
        return None if new is None else (new, *args[1:])

    with on_input(mlp_out_proj(model, layer), pre):
        yield


@contextmanager
def embedding(model, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """fn(token embeddings [B, T, d]) after the input embedding; a tensor it returns replaces them."""
    with on_output(model.get_input_embeddings(), lambda _m, _args, out: fn(out)):
        yield




def block_output(output) -> torch.Tensor:
    """A decoder block's residual-stream output ([B, T, d]); HF blocks return a tensor or a tuple led by it."""
    return output[0] if isinstance(output, tuple) else output


def replace_block_output(output, new: torch.Tensor):
    return (new, *output[1:]) if isinstance(output, tuple) else new


@contextmanager
def hooked(model, layer: int, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """While the block runs: fn(h [B, T, d]) sees block `layer`'s output; a tensor it returns replaces it.
    fn sees h on the model's input device, where the analyses keep their masks and sources; a model spread over
    devices (device_map="auto") gets the new output back on the block's own device (one device: no copy)."""
    dev = input_device(model)

    def hook(_m, _i, out):
        h = block_output(out)
        new = fn(h.to(dev))
        return None if new is None else replace_block_output(out, new.to(h.device))

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def resumed_at(model, layer: int, h: torch.Tensor) -> Iterator[None]:
    """While active, a forward pass does not compute blocks 0..layer: block `layer` hands on `h` (its output for
    exactly this batch, captured earlier from this model) and the blocks below pass their input through.

    Why: steering that edits block `layer`'s output leaves everything below it unchanged, so an alpha grid over
    one checkpoint recomputed the same lower blocks once per setting. Hooks on block `layer` still see `h` and may
    replace it. Only valid for the model and batch `h` came from; `resume_matches` checks a model family once.
    Embeddings and masks are still built by the model's own forward, so the upper blocks get what they always get."""
    blocks = decoder_layers(model)
    patched = []

    def passthrough(hidden_states, *args, **kwargs):
        return hidden_states

    def cached(hidden_states, *args, **kwargs):
        return h.to(hidden_states.device, hidden_states.dtype)

    try:
        for i in range(layer + 1):
            block = blocks[i]
            own = block.__dict__.get("forward")  # accelerate's device hooks live here; restored below
            patched.append((block, own))
            block.forward = cached if i == layer else passthrough
        yield
    finally:
        for block, own in patched:
            if own is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = own


@torch.no_grad()
def resume_matches(model, ids: torch.Tensor, mask: torch.Tensor, layer: int, atol: float = 1e-4) -> bool:
    """Whether a pass resumed at `layer` gives the full pass's logits on this batch: a block that returns more than
    its hidden states, or a model loop that reads other block outputs, makes it differ, and then callers run the
    full pass instead."""
    states, logits = capture_block_outputs(model, ids, mask, [layer], with_logits=True)
    try:
        with resumed_at(model, layer, states[layer]):
            again = model(input_ids=ids, attention_mask=mask).logits
    except Exception:  # noqa: BLE001 - any failure of the shortcut means: use the full pass
        return False
    keep = mask.bool()
    return bool(torch.allclose(again[keep].float(), logits[keep].float(), atol=atol, rtol=1e-4))


class _Captured(Exception):
    """Raised by the hook of the highest block asked for when no logits are: the blocks above it never run."""


@torch.no_grad()
def capture_block_outputs(model, ids: torch.Tensor, mask: torch.Tensor, layers: list[int] | None = None,
                          with_logits: bool = False, keep: torch.Tensor | None = None):
    """{layer: [B, T, d]} block outputs of the requested layers (default all), from ONE forward pass, on the input
    device; with with_logits, (that dict, logits [B, T, V]) from the same pass, or with keep ([B, T] bool) only the
    logits at its positions ([n, V], `scoring.kept_logits`). Without logits the pass stops after the highest block
    asked for (an SAE's training activations at block 1 of 12 need 2 blocks, not 12 and the output projection)."""
    blocks = decoder_layers(model)
    layers = list(range(len(blocks))) if layers is None else list(layers)
    store: dict[int, torch.Tensor] = {}
    dev = input_device(model)
    top = max(layers, default=-1)

    def hook(_m, _i, out, i):
        store[i] = block_output(out).to(dev)
        if not with_logits and i == top:
            raise _Captured

    handles = [blocks[i].register_forward_hook(lambda m, inp, out, i=i: hook(m, inp, out, i)) for i in layers]
    logits = None
    try:
        if keep is not None and with_logits:
            logits = kept_logits(model, keep, input_ids=ids, attention_mask=mask)
        else:
            logits = model(input_ids=ids, attention_mask=mask).logits
    except _Captured:
        pass
    finally:
        for h in handles:
            h.remove()
    return (store, logits) if with_logits else store


@contextmanager
def edited_blocks(model, layers: list[int] | tuple[int, ...], fn: Callable[[torch.Tensor], torch.Tensor]
                  ) -> Iterator[None]:
    """While the block runs, every listed block's output h [B, T, d] is replaced by fn(h) (fn sees h on the input
    device, as in `hooked`)."""
    blocks = decoder_layers(model)
    dev = input_device(model)

    def hook(_m, _i, out):
        h = block_output(out)
        return replace_block_output(out, fn(h.to(dev)).to(h.device))

    handles = [blocks[i].register_forward_hook(hook) for i in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
