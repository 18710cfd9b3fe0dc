"""Parametric change of concept vectors between the original (v0) and another checkpoint (v1).

"The method barely touched the concept vectors" is only a claim against a baseline: the same statistics on random
columns of the same layers say how much an ordinary column moved. Identical columns give exactly cosine 1, L2 0,
Jaccard 1 and survival 1 (computed exactly, not up to float rounding). Vocabulary projections use each model's own
unembedding and final-norm weight, as a reader of that model would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch

from unlearn_core.analyses.concept_vectors.locate import project_columns
from unlearn_core.model import arch

CHANGE_COLUMNS = ["checkpoint", "concept", "kind", "layer", "neuron", "cosine", "l2", "rel_l2", "jaccard", "survival"]
WEIGHT_COLUMNS = ["checkpoint", "parameter", "layer", "group", "shape", "is_matrix", "norm", "dnorm", "rel_change"]


def gather_columns(model, cols: Sequence[tuple[int, int]]) -> torch.Tensor:
    """[d_model, n] the requested (layer, neuron) columns, float32 CPU."""
    if not cols:
        return torch.zeros(arch.mlp_out_matrix(model, 0).shape[0], 0)
    return torch.stack([arch.mlp_out_matrix(model, layer)[:, j].detach().float().cpu() for layer, j in cols], dim=1)


def column_change(
    model0, model1, cols: Sequence[tuple[int, int]], k: int, apply_norm: bool,
    concept_ids: Sequence[torch.Tensor | None],
) -> list[dict]:
    """Per column: cosine, L2, relative L2, top-k Jaccard and concept-token survival (v1 vs v0).

    survival = |concept tokens in top-k(v1) and in top-k(v0)| / |concept tokens in top-k(v0)|; NaN when v0 has
    none (random columns) or no concept ids are given.
    """
    if not cols:
        return []
    v0, v1 = gather_columns(model0, cols), gather_columns(model1, cols)  # [d_model, n]
    same = (v0 == v1).all(0)  # [n]
    cos = torch.nn.functional.cosine_similarity(v0, v1, dim=0)
    cos = torch.where(same, torch.ones_like(cos), cos)
    diff = (v1 - v0).norm(dim=0)
    diff = torch.where(same, torch.zeros_like(diff), diff)
    rel = diff / v0.norm(dim=0).clamp_min(1e-12)
    top0 = project_columns(model0, v0, apply_norm).topk(k, dim=0).indices.cpu()  # [k, n]
    top1 = project_columns(model1, v1, apply_norm).topk(k, dim=0).indices.cpu()
    rows = []
    for c, (layer, neuron) in enumerate(cols):
        s0, s1 = set(top0[:, c].tolist()), set(top1[:, c].tolist())
        jac = 1.0 if bool(same[c]) and s0 == s1 else len(s0 & s1) / len(s0 | s1)
        surv = math.nan
        ids = concept_ids[c]
        if ids is not None and ids.numel():
            cset = set(ids.tolist())
            before = s0 & cset
            if before:
                surv = len(before & s1) / len(before)
        rows.append({"layer": layer, "neuron": neuron, "cosine": float(cos[c]), "l2": float(diff[c]),
                     "rel_l2": float(rel[c]), "jaccard": float(jac), "survival": surv})
    return rows


def parameter_groups(model) -> dict[str, tuple[int, str]]:
    """name -> (layer, group): its decoder block index, n_layers "head" (final norm, untied output head) or
    -1 "embed" (everything else outside the blocks: token/position embeddings, a tied head)."""
    layers = arch.decoder_layers(model)
    block_of = {id(p): i for i, block in enumerate(layers) for p in block.parameters()}
    head = set()
    norm = arch.final_norm(model)
    if norm is not None:
        head |= {id(p) for p in norm.parameters()}
    if not arch.is_tied(model):
        head |= {id(p) for p in model.get_output_embeddings().parameters()}
    out = {}
    for name, p in model.named_parameters():
        if id(p) in block_of:
            out[name] = (block_of[id(p)], "block")
        elif id(p) in head:
            out[name] = (len(layers), "head")
        else:
            out[name] = (-1, "embed")
    return out


@torch.no_grad()
def weight_change(model0, model1, checkpoint: str) -> list[dict]:
    """||dW||_F / ||W||_F for EVERY named parameter (matrices flagged), with its layer (-1 embeddings, L head)."""
    groups = parameter_groups(model0)
    p1 = dict(model1.named_parameters())
    rows = []
    for name, w0 in model0.named_parameters():
        w1 = p1.get(name)
        if w1 is None or w1.shape != w0.shape:
            continue
        a, b = w0.detach().float(), w1.detach().to(w0.device).float()
        norm = float(a.norm())
        dnorm = 0.0 if torch.equal(a, b) else float((b - a).norm())
        layer, group = groups[name]
        rows.append({"checkpoint": checkpoint, "parameter": name, "layer": layer, "group": group,
                     "shape": "x".join(map(str, w0.shape)), "is_matrix": w0.dim() >= 2, "norm": norm,
                     "dnorm": dnorm, "rel_change": dnorm / norm if norm > 0 else (0.0 if dnorm == 0 else math.inf)})
    return rows


def per_layer_change(frame: pd.DataFrame, matrices_only: bool = True) -> pd.DataFrame:
    """Aggregate weight_change rows per (checkpoint, layer): sqrt(sum dnorm^2) / sqrt(sum norm^2)."""
    df = frame[frame["is_matrix"]] if matrices_only else frame
    if df.empty:
        return pd.DataFrame(columns=["checkpoint", "layer", "group", "rel_change"])
    g = df.assign(d2=df["dnorm"] ** 2, n2=df["norm"] ** 2).groupby(["checkpoint", "layer", "group"], sort=False)
    out = g[["d2", "n2"]].sum().reset_index()
    out["rel_change"] = (out["d2"] ** 0.5) / (out["n2"] ** 0.5).where(out["n2"] > 0)
    return out.drop(columns=["d2", "n2"]).sort_values(["checkpoint", "layer"], kind="stable").reset_index(drop=True)
