"""Locating concept vectors: which MLP output columns write a concept's tokens into the residual stream.

A column v of an MLP output matrix is what neuron j adds to the residual stream; projecting it through the output
head (logit lens on a direction: W_U @ (g * v), g = the final norm's weight, no centring, no bias) says which
tokens it promotes. A column whose top-k tokens are the concept's own tokens (entity name pieces, answer words,
keywords) is a candidate concept vector; causal validation (concept_ablation) keeps those that matter.
Every column of a layer is projected with ONE matrix product ([vocab, d_model] @ [d_model, d_mlp]), chunked over
columns so a 7B layer (32k x 11008) never needs more than `column_chunk` columns of logits at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from unlearn_core.data.items import QAItem
from unlearn_core.model import arch

_STRIP = re.compile(r"^\W+|\W+$")


def concept_items(items: Sequence[QAItem], concept: str) -> tuple[int, ...]:
    """Indices of the items of one concept: exact item.concept match (case-insensitive), else items whose
    concept or question contains the typed string (so a user can type a surname or a topic word)."""
    key = concept.strip().lower()
    exact = tuple(i for i, it in enumerate(items) if (it.concept or "").strip().lower() == key)
    if exact or not key:
        return exact
    return tuple(i for i, it in enumerate(items) if key in (it.concept or "").lower() or key in it.question.lower())


def concept_words(items: Sequence[QAItem], concept: str, sources: Sequence[str]) -> list[str]:
    """The words whose tokens stand for the concept: its name, its items' answers and keywords (as chosen)."""
    words: list[str] = []
    if "name" in sources:
        words += concept.split()
    for it in items:
        if "answer" in sources and not it.is_passage:
            words += it.answer.split()
        if "keywords" in sources:
            for k in it.keywords:
                words += k.split()
    out = []
    for w in words:
        w = _STRIP.sub("", w)
        if w and w not in out:
            out.append(w)
    return out


def word_token_ids(tokenizer, words: Sequence[str]) -> set[int]:
    """Token ids of every word, bare and with a leading space (BPE tokenises " Name" and "Name" differently)."""
    if not words:
        return set()
    variants = [v for w in words for v in (w, " " + w)]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids = tokenizer(variants, add_special_tokens=False)["input_ids"]
    return {t for seq in ids for t in seq if t not in special}


def norm_weight(model) -> torch.Tensor | None:
    """The final norm's elementwise weight ([d_model]) if it has one (LayerNorm, RMSNorm), else None."""
    norm = arch.final_norm(model)
    w = getattr(norm, "weight", None) if norm is not None else None
    return w if isinstance(w, torch.Tensor) else None


def project_columns(model, columns: torch.Tensor, apply_norm: bool) -> torch.Tensor:
    """[vocab, n] logit-lens scores of columns ([d_model, n]) under `model`'s own unembedding, float32."""
    w_u = arch.unembedding(model)  # [vocab, d_model]
    cols = columns.to(device=w_u.device, dtype=torch.float32)
    g = norm_weight(model) if apply_norm else None
    if g is not None:
        cols = cols * g.float()[:, None]
    return w_u.float() @ cols


def layer_topk(model, layer: int, k: int, apply_norm: bool, column_chunk: int = 4096) -> torch.Tensor:
    """[k, d_mlp] token ids ranked by projection, every column of one layer (CPU, long)."""
    w = arch.mlp_out_matrix(model, layer).detach()  # [d_model, d_mlp]
    out = []
    for start in range(0, w.shape[1], column_chunk):
        proj = project_columns(model, w[:, start : start + column_chunk], apply_norm)  # [vocab, chunk]
        out.append(proj.topk(k, dim=0).indices.cpu())
    return torch.cat(out, dim=1)


def rank_weights(k: int) -> torch.Tensor:
    """Reciprocal-rank weight of ranks 0..k-1: a concept token at rank r adds 1 / (r + 1)."""
    return 1.0 / torch.arange(1, k + 1, dtype=torch.float32)


def concept_scores(topk: torch.Tensor, token_sets: Sequence[torch.Tensor]) -> torch.Tensor:
    """[n_concepts, d_mlp] reciprocal-rank sum of each concept's tokens within each column's top-k."""
    w = rank_weights(topk.shape[0])[:, None]  # [k, 1]
    rows = [(torch.isin(topk, ids).float() * w).sum(0) if ids.numel() else torch.zeros(topk.shape[1])
            for ids in token_sets]
    return torch.stack(rows) if rows else torch.zeros(0, topk.shape[1])


def locate_scores(model, token_sets: Sequence[torch.Tensor], k: int, apply_norm: bool,
                  column_chunk: int = 4096) -> torch.Tensor:
    """[n_concepts, n_layers, d_mlp] concept scores of every column of every layer."""
    per_layer = [concept_scores(layer_topk(model, layer, k, apply_norm, column_chunk), token_sets)
                 for layer in range(arch.n_layers(model))]
    return torch.stack(per_layer, dim=1)


def top_candidates(scores: torch.Tensor, n: int) -> list[tuple[int, int, float]]:
    """(layer, neuron, score) of the n best-scoring columns of one concept ([n_layers, d_mlp]), score > 0 only."""
    flat = scores.flatten()
    n = min(n, int((flat > 0).sum()))
    if n == 0:
        return []
    vals, idx = flat.topk(n)
    d_mlp = scores.shape[1]
    return [(int(i) // d_mlp, int(i) % d_mlp, float(v)) for v, i in zip(vals, idx)]
