"""The forward-pass kernel: the one place that hooks a decoder block and the one answer-span convention.

Answer span: prompt and answer are tokenised separately (scoring.encode); the logits at positions p-1 .. p+a-2
predict the a answer tokens. Every analysis that reads or replaces a block's output goes through the hooks below
(architecture-neutral through unlearn_core.arch), so a new model family needs one change in arch.py only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from unlearn_core.arch import decoder_layers
from unlearn_core.scoring import Encoded, answer_span_mask, input_device, kept_logits, right_pad


def block_output(output) -> torch.Tensor:
    """A decoder block's residual-stream output ([B, T, d]); HF blocks return a tensor or a tuple led by it."""
    return output[0] if isinstance(output, tuple) else output


def replace_block_output(output, new: torch.Tensor):
    return (new, *output[1:]) if isinstance(output, tuple) else new


def answer_scores(model, batch: list[Encoded], ids: torch.Tensor, mask: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] mean answer-token log-prob, [B] every answer token the argmax) (float32 / bool, CPU) from one pass over
    the right-padded batch that projects only the answer positions; one softmax over all of them, not one per item
    (an item without answer tokens: NaN, False)."""
    span = answer_span_mask(batch, ids.shape[1], ids.device)
    flat = kept_logits(model, span, input_ids=ids, attention_mask=mask).float()  # [n, V], row-major
    labels = torch.tensor([t for e in batch for t in e.answer_ids], dtype=torch.long, device=flat.device)
    owner = span.nonzero()[:, 0]
    lp = F.log_softmax(flat, -1).gather(1, labels[:, None])[:, 0]
    n = torch.zeros(len(batch), device=flat.device).index_add_(0, owner, torch.ones_like(lp))
    sums = torch.zeros(len(batch), device=flat.device).index_add_(0, owner, lp)
    wrong = torch.zeros(len(batch), device=flat.device).index_add_(0, owner, (flat.argmax(-1) != labels).float())
    mean = torch.where(n > 0, sums / n.clamp_min(1), torch.nan)
    return mean.cpu(), ((wrong == 0) & (n > 0)).cpu()


def answer_logits(model, batch: list[Encoded], ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per item the [a, V] logits that predict its answer tokens, from one pass over the right-padded batch that
    projects only those positions onto the vocabulary (`scoring.kept_logits`)."""
    span = answer_span_mask(batch, ids.shape[1], ids.device)
    flat = kept_logits(model, span, input_ids=ids, attention_mask=mask)
    return list(flat.split([len(e.answer_ids) for e in batch]))


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


def answer_logprob_sums(model, batch: list[Encoded], pad_id: int, answers_only: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable sum of answer-token log-probs per item [B] and answer lengths [B] (for fine-tuning attacks;
    scoring without gradients is scoring.score_encoded).

    answers_only: project only the answer positions onto the vocabulary (`kept_logits`), forward and backward. The
    demo lab's training keeps the full projection: its checkpoints are cached by their config, and another GEMM
    shape in the backward pass may round differently and move the weights a cached lab was built with."""
    ids, mask = right_pad([e.ids for e in batch], pad_id, input_device(model))
    if answers_only:
        span = answer_span_mask(batch, ids.shape[1], ids.device)
        logp = F.log_softmax(kept_logits(model, span, input_ids=ids, attention_mask=mask).float(), dim=-1)
        labels = torch.roll(ids, -1, dims=1)[span]  # position t predicts token t + 1
        tok = logp.gather(1, labels[:, None])[:, 0]
        sums = torch.zeros(ids.shape[0], dtype=tok.dtype, device=tok.device).index_add(0, span.nonzero()[:, 0], tok)
        return sums, span.sum(1).to(tok.dtype)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logp = F.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None])[..., 0]  # [B, T-1]
    span = torch.zeros_like(logp)
    for r, e in enumerate(batch):
        p, a = len(e.prompt_ids), len(e.answer_ids)
        span[r, p - 1 : p + a - 1] = 1.0
    return (logp * span).sum(1), span.sum(1)
