"""Steering at a block output: run a split with a hook, the inject/scale edit, fact and random feature sets."""

from __future__ import annotations

from contextlib import ExitStack

import torch

from unlearn_core.model.forward import answer_scores, answer_span_mask
from unlearn_core.model.hooks import hooked, resumed_at
from unlearn_core.model.scoring import Encoded, input_device, length_batches, right_pad


class Split:
    """One split's encoded items in length batches, with the original's hidden states at the layer (on device)."""

    def __init__(self, enc: list[Encoded], batch_size: int, pad: int, device):
        self.enc = enc
        self.batches = length_batches([len(e.ids) for e in enc], batch_size)
        self.padded = [right_pad([enc[i].ids for i in b], pad, device) for b in self.batches]
        self.h_orig: list[torch.Tensor] = []  # per batch [B, T, d]


@torch.no_grad()
def run_split(model, layer: int, split: Split, steer_for_batch=None, resume: list[torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(p~ [n], acc [n], captured block-`layer` outputs per batch). steer_for_batch(b) -> fn(h) -> new h, or None
    to capture the block output instead. resume: this model's own block-`layer` outputs per batch (from an earlier
    capture); the pass then starts above the block (forward.resumed_at) instead of recomputing what the steering
    cannot change."""
    n = len(split.enc)
    lp, acc = torch.zeros(n), torch.zeros(n)
    captured = []
    dev = input_device(model)
    for b, (idx, (ids, mask)) in enumerate(zip(split.batches, split.padded, strict=True)):
        store = {}
        fn = steer_for_batch(b) if steer_for_batch else (lambda h, store=store: store.__setitem__("h", h))
        with ExitStack() as stack:
            if resume is not None:
                stack.enter_context(resumed_at(model, layer, resume[b]))
            stack.enter_context(hooked(model, layer, fn))
            lp[idx], right = answer_scores(model, [split.enc[i] for i in idx], ids.to(dev), mask.to(dev))
        captured.append(store.get("h"))
        acc[idx] = right.float()
    return lp.exp(), acc, captured


@torch.no_grad()
def steering_directions(sae, masks: dict[tuple[str, str], torch.Tensor], h_u: torch.Tensor,
                        h_orig: torch.Tensor | None) -> dict[tuple[str, str], torch.Tensor]:
    """{(variant, feature set): D [B, T, d]} for one batch, with steered state h' = h_u + alpha * D at every
    position: the linear part of the SAE decoder applied to the feature edit at alpha = 1 (inject: z_o - z_u,
    scale: z_u, both masked to the steered features; each mask [B, d_sae], one row per item). Linear in alpha, so
    one direction serves the whole alpha grid. Every edit shares the same two codes, so each state is encoded once
    here: the encode (a TopK over every feature at every position) was ~40% of this analysis when each edit
    encoded both states again."""
    z_u = sae.encode(h_u.float())  # [B, T, d_sae]
    z_o = sae.encode(h_orig.float()) if any(v == "inject" for v, _ in masks) else None
    zero = sae.decode(torch.zeros_like(z_u[:1, :1]))  # [1, 1, d]
    out = {}
    for (variant, fname), mask in masks.items():
        dz = (z_o - z_u if variant == "inject" else z_u) * mask[:, None, :]
        out[(variant, fname)] = sae.decode(dz) - zero
    return out


def steering_direction(sae, mask: torch.Tensor, variant: str, h_u: torch.Tensor, h_orig: torch.Tensor | None
                       ) -> torch.Tensor:
    """D [B, T, d] of one edit (steering_directions for a single variant and feature set)."""
    return steering_directions(sae, {(variant, ""): mask}, h_u, h_orig)[(variant, "")]


def steer(sae, mask: torch.Tensor, variant: str, alpha: float, h_orig: torch.Tensor | None):
    """fn(h) adding W_dec^T dz at every position of the block output h [B, T, d]; mask [B, d_sae] (1 = steered
    feature, one row per item, so every item can have its own feature set). Computes the direction from the h it
    is given; compute_restoration precomputes it once per alpha grid (steering_direction)."""

    def fn(h):
        return h + (alpha * steering_direction(sae, mask, variant, h, h_orig)).to(h.dtype)

    return fn


def fact_sets(mean: torch.Tensor, grand: torch.Tensor, m: int, live: torch.Tensor, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item [n, d_sae] 0/1 masks: its top-m features by (item mean - grand mean) and m random live features
    outside that set."""
    n, d_sae = mean.shape
    fact = torch.zeros(n, d_sae)
    fact.scatter_(1, torch.topk(mean - grand, m, dim=1).indices, 1.0)
    rand = torch.zeros(n, d_sae)
    for i in range(n):
        pool = live[fact[i, live] == 0]
        rand[i, pool[torch.randperm(len(pool), generator=gen)[:m]]] = 1.0
    return fact, rand


@torch.no_grad()
def feature_stats(sae, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: mean and max SAE activation over the answer-span positions (p-1 .. p+a-2, whose outputs predict the
    answer), each [n_items, d_sae] (CPU). The span, not the whole sequence: the prompt template is shared by both
    splits and would dominate a whole-sequence mean with features that say nothing about the forgotten facts."""
    n, d_sae = len(split.enc), sae.cfg.d_sae
    mean, mx = torch.zeros(n, d_sae), torch.zeros(n, d_sae)
    for idx, (ids, _), h in zip(split.batches, split.padded, split.h_orig, strict=True):
        span = answer_span_mask([split.enc[i] for i in idx], ids.shape[1], h.device)  # [B, T]
        z = sae.encode(h.float()) * span[..., None]  # [B, T, d_sae]
        mean[idx] = (z.sum(1) / span.sum(1, keepdim=True)).cpu()
        mx[idx] = z.max(1).values.cpu()
    return mean, mx
