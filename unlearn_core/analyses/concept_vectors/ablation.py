"""Scoring QA items while chosen MLP columns (concept vectors) are edited, without touching the loaded weights.

Causal validation and the ablation oracle both ask "what if column j of layer l's MLP output matrix were different?".
Editing column j by `delta` changes the MLP output by `h_j * delta` (h_j = neuron j's activation), so a forward hook
on the output projection adds exactly that: the result equals a deepcopy with the edited weight, while the loaded
model is never modified. Many edit variants (one per candidate vector, say) share ONE forward pass: rows of a batch
carry a variant index and the hook adds each row's own edit, so validating 24 candidates costs 24x the rows, not
24x the Python round trips. Variant -1 (the last row of every edit table) is the unedited model.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch

from unlearn_core.model import arch
from unlearn_core.model.forward import answer_logits, answer_scores, token_logprobs
from unlearn_core.model.hooks import mlp_hidden, mlp_out
from unlearn_core.model.scoring import Encoded, input_device, length_batches, right_pad


@dataclass(frozen=True)
class ColumnEdit:
    """Add `delta` ([d_model]) to column `neuron` of layer `layer`'s MLP output matrix; zeroing uses -column."""

    layer: int
    neuron: int
    delta: torch.Tensor


Variant = tuple[ColumnEdit, ...]


def zero_edit(model, layer: int, neuron: int) -> ColumnEdit:
    return ColumnEdit(layer, neuron, -arch.mlp_out_matrix(model, layer)[:, neuron].detach().float().cpu())


def noise_edit(model, layer: int, neuron: int, std: float, generator: torch.Generator) -> ColumnEdit:
    d_model = arch.mlp_out_matrix(model, layer).shape[0]
    return ColumnEdit(layer, neuron, torch.randn(d_model, generator=generator) * std)


class _EditHooks:
    """Forward hooks on the MLP output projections adding each row's variant edit: out += x[..., U] @ D[variant]."""

    def __init__(self, model, variants: Sequence[Variant]):
        self.model = model
        n_var = len(variants)
        by_layer: dict[int, list[tuple[int, ColumnEdit]]] = {}
        for v, edits in enumerate(variants):
            for e in edits:
                by_layer.setdefault(e.layer, []).append((v, e))
        self.tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for layer, entries in by_layer.items():
            w = arch.mlp_out_matrix(model, layer)  # [d_model, d_mlp]
            neurons = sorted({e.neuron for _, e in entries})
            col = {n: i for i, n in enumerate(neurons)}
            table = torch.zeros(n_var + 1, len(neurons), w.shape[0])  # [variants + unedited, u, d_model]
            for v, e in entries:
                table[v, col[e.neuron]] += e.delta.float().cpu()
            # on the projection's own device: a model spread over devices runs each block where it lives
            self.tables[layer] = (torch.tensor(neurons, device=w.device), table.to(device=w.device, dtype=w.dtype))
        self.row_variant: torch.Tensor | None = None  # [B] variant index of each batch row
        self.stack = ExitStack()

    def __enter__(self):
        for layer, (neurons, table) in self.tables.items():
            def edit(hidden, output, neurons=neurons, table=table):
                x = hidden[..., neurons]  # [B, T, u] activations of the edited neurons
                rows = table[self.row_variant.to(table.device)]  # [B, u, d_model]
                return output + torch.einsum("btu,bud->btd", x, rows)  # [B, T, d_model]

            self.stack.enter_context(mlp_out(self.model, layer, edit))
        return self

    def __exit__(self, *exc):
        self.stack.close()


@torch.no_grad()
def score_under_edits(
    model,
    encoded: Sequence[Encoded],
    pad_id: int,
    variants: Sequence[Variant],
    batch_size: int = 32,
    max_tokens: int | None = 16384,
) -> tuple[np.ndarray, np.ndarray]:
    """(p~, accuracy), each [len(variants) + 1, n_items]; the last row is the unedited model.

    p~ = exp(mean answer-token log-prob); accuracy = every answer token is the teacher-forced argmax. Rows of all
    variants go through one length-sorted batch stream, so short prompts of different variants share batches.
    """
    n, n_var = len(encoded), len(variants) + 1
    p = np.full((n_var, n), np.nan)
    acc = np.full((n_var, n), np.nan)
    if n == 0:
        return p, acc
    device = input_device(model)
    rows = [(v, i) for v in range(n_var) for i in range(n)]
    lengths = [len(encoded[i].prompt_ids) + len(encoded[i].answer_ids) for _, i in rows]
    with _EditHooks(model, variants) as hooks:
        for batch in length_batches(lengths, batch_size, max_tokens):
            seqs = [encoded[rows[r][1]].ids for r in batch]
            ids, mask = right_pad(seqs, pad_id, device)
            hooks.row_variant = torch.tensor([rows[r][0] for r in batch], device=device)
            items = [encoded[rows[r][1]] for r in batch]
            if not any(e.answer_ids for e in items):
                continue
            mean, right = answer_scores(model, items, ids, mask)  # [B] mean answer log-prob, all tokens argmax
            has = torch.tensor([bool(e.answer_ids) for e in items])
            mean_lp = mean.numpy()
            all_right = torch.where(has, right.float(), torch.nan).numpy()
            for b, r in enumerate(batch):
                v, i = rows[r]
                p[v, i] = np.exp(mean_lp[b])
                acc[v, i] = all_right[b]
    return p, acc


def zero_ablation_attribution(model, encoded: Sequence[Encoded], pad_id: int, batch_size: int = 32) -> torch.Tensor:
    """[n_layers, d_mlp] first-order estimate of how much zeroing each MLP column lowers the mean answer log-prob.

    Zeroing neuron j removes h_j * W[:, j]; to first order the objective changes by -h_j * dL/dh_j, so the
    predicted drop is sum over positions of h_j * dL/dh_j ("attribution patching"): one forward and backward
    pass per length batch ranks every column, where exact ablation would need one variant per column. Tiny
    models spread a fact over many columns, each worth ~1e-4 of p~, so ranking all of them needs this.
    """
    device = input_device(model)
    layers = range(arch.n_layers(model))
    total = torch.zeros(len(layers), arch.mlp_out_matrix(model, 0).shape[1])
    acts: dict[int, torch.Tensor] = {}

    def make_hook(layer):
        def pre(hidden):
            x = hidden.detach().requires_grad_(True)  # [B, T, d_mlp]; the weights stay frozen and untouched
            acts[layer] = x
            return x
        return pre

    with ExitStack() as hooks:
        for layer in layers:
            hooks.enter_context(mlp_hidden(model, layer, make_hook(layer)))
        with torch.enable_grad():
            lengths = [len(e.prompt_ids) + len(e.answer_ids) for e in encoded]
            for batch in length_batches(lengths, batch_size):
                ids, mask = right_pad([encoded[i].ids for i in batch], pad_id, device)
                spans = answer_logits(model, [encoded[i] for i in batch], ids, mask)  # per item [a, V]
                objective = spans[0].new_zeros((), dtype=torch.float32)
                for span, i in zip(spans, batch, strict=True):
                    e = encoded[i]
                    if e.answer_ids:
                        objective = objective + token_logprobs(span, torch.tensor(e.answer_ids, device=device)).mean()
                grads = torch.autograd.grad(objective, [acts[layer] for layer in layers], allow_unused=True)
                for layer, g in zip(layers, grads):
                    if g is not None:
                        total[layer] += (acts[layer].detach() * g.detach() * mask[..., None]).float().sum((0, 1)).cpu()
    acts.clear()
    return total / max(1, len(encoded))
