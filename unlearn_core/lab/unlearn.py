"""Real unlearning methods run on the original model, each stopped by a rule (forget accuracy <= threshold).

GA (gradient ascent), GradDiff (ascent on forget + descent on retain), NPO (+ retain NLL; Zhang et al. 2024),
RMU (Li et al. 2024, WMDP: misdirect one layer's forget activations to a random direction, keep retain ones),
and two planted suppression controls at different depths (ground truth: suppressed):
- `suppressed_head`: GradDiff restricted to the last block, final norm and output head, so every earlier
  representation is byte-identical to the original's;
- `suppressed_lowrank`: GradDiff through a rank-r additive update B @ A on the MLP output projection of EVERY block,
  the original weights frozen; the update is merged into the saved weights and also returned, so subtracting it
  restores the original (up to float rounding).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from contextlib import ExitStack

import torch
import torch.nn.functional as F

from unlearn_core.lab.config import UnlearnConfig
from unlearn_core.model import arch
from unlearn_core.model.forward import answer_logprob_sums
from unlearn_core.model.hooks import mlp_out
from unlearn_core.model.scoring import Encoded, pad_id_of, right_pad, score_encoded

METHODS = ("ga", "graddiff", "npo", "rmu", "suppressed_head", "suppressed_lowrank")


def _nll(model, batch, pad_id) -> torch.Tensor:
    s, n = answer_logprob_sums(model, batch, pad_id)
    return -(s / n).mean()


def _hidden(model, batch: list[Encoded], pad_id: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Output of block `layer` [B, T, d] and the token mask [B, T]."""
    ids, mask = right_pad([e.ids for e in batch], pad_id, next(model.parameters()).device)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return out.hidden_states[layer + 1], mask


def rmu_layer(model) -> int:
    return max(1, arch.n_layers(model) // 2 - 1) if arch.n_layers(model) > 3 else 1


def over_unlearn(retrained, tokenizer, forget: list[Encoded], target_p: float, cfg: UnlearnConfig, seed: int = 0,
                 progress: Callable[[int, float], None] | None = None):
    """(model, stats): the retrained twin, which never saw the forget facts, pushed by gradient ascent on them until
    its mean forget answer p~ is at most `target_p` (a share of the reference's): a deletion whose forget answers
    sit well below a model that never knew them, the case where recovery measured from a model's own floor reads
    as "suppressed"."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = copy.deepcopy(retrained).train()
    pad = pad_id_of(tokenizer)
    opt = torch.optim.AdamW(list(model.parameters()), lr=cfg.over_lr, weight_decay=0.0)

    def forget_p() -> float:
        model.eval()
        p = float(score_encoded(model, forget, pad, batch_size=64).prob().mean())
        model.train()
        return p

    p, step = forget_p(), 0
    while p > target_p and step < cfg.max_steps:
        step += 1
        loss = -_nll(model, rng.sample(forget, min(cfg.batch_size, len(forget))), pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        p = forget_p()
        if progress:
            progress(step, p)
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model, {"method": "gradient ascent on the retrained twin", "steps": step, "lr": cfg.over_lr,
                   "forget_p_at_stop": p, "target_p": target_p,
                   "stopped_by": "rule" if p <= target_p else "max_steps",
                   "stop_rule": f"mean forget answer p~ <= {cfg.over_ratio:g} x the reference's"}


def unlearn(method: str, original, tokenizer, forget: list[Encoded], retain: list[Encoded], cfg: UnlearnConfig,
            seed: int = 0, progress: Callable[[int, float], None] | None = None):
    """Returns (unlearned model, stats). `original` is never modified."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = copy.deepcopy(original).train()
    pad = pad_id_of(tokenizer)
    frozen = original.eval()
    lr = {"ga": cfg.ga_lr, "graddiff": cfg.graddiff_lr, "npo": cfg.npo_lr, "rmu": cfg.rmu_lr,
          "suppressed_head": cfg.head_lr, "suppressed_lowrank": cfg.lowrank_lr}[method]
    for p in model.parameters():
        p.requires_grad_(False)
    if method == "rmu":
        layer = rmu_layer(model)
        params = list(arch.mlp_module(model, layer).parameters())
        with torch.no_grad():
            h, m = _hidden(frozen, forget, pad, layer)
            scale = (h.norm(dim=-1) * m).sum() / m.sum()
        u = torch.rand(h.shape[-1], generator=torch.Generator().manual_seed(seed)).to(h.device)
        control = cfg.rmu_steer * scale * u / u.norm() / h.shape[-1] ** 0.5
    elif method == "suppressed_head":
        params = arch.head_parameters(model)
    elif method == "suppressed_lowrank":
        lowrank = LowRankDelta(model, cfg.lowrank_rank, seed)
        params = lowrank.parameters()
    else:
        params = list(model.parameters())
    if method != "suppressed_lowrank":
        for p in params:
            p.requires_grad_(True)
    if method == "npo":
        with torch.no_grad():
            ref = {id(e): answer_logprob_sums(frozen, [e], pad)[0][0] for e in forget}
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def forget_acc() -> float:
        model.eval()
        correct = score_encoded(model, forget, pad, batch_size=64).accuracy()
        acc = float(correct.sum().item()) / len(forget)  # exact fraction: float32 2/20 = 0.10000000149 > 0.1
        model.train()
        return acc

    acc, step = forget_acc(), 0
    while acc > cfg.stop_forget_acc and step < cfg.max_steps:
        step += 1
        fb = rng.sample(forget, min(cfg.batch_size, len(forget)))
        rb = rng.sample(retain, min(cfg.retain_batch_size, len(retain)))
        if method == "ga":
            loss = -_nll(model, fb, pad)
        elif method in ("graddiff", "suppressed_head", "suppressed_lowrank"):
            loss = -_nll(model, fb, pad) + cfg.retain_weight * _nll(model, rb, pad)
        elif method == "npo":
            s, _ = answer_logprob_sums(model, fb, pad)
            ratio = s - torch.stack([ref[id(e)] for e in fb])
            npo = -(2 / cfg.npo_beta) * F.logsigmoid(-cfg.npo_beta * ratio).mean()
            loss = npo + cfg.retain_weight * _nll(model, rb, pad)
        else:  # rmu
            hf, mf = _hidden(model, fb, pad, layer)
            hr, mr = _hidden(model, rb, pad, layer)
            with torch.no_grad():
                hr0, _ = _hidden(frozen, rb, pad, layer)
            lf = (((hf - control) ** 2).mean(-1) * mf).sum() / mf.sum()
            lr_ = (((hr - hr0) ** 2).mean(-1) * mr).sum() / mr.sum()
            loss = lf + cfg.rmu_alpha * lr_
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        acc = forget_acc()
        if progress:
            progress(step, acc)
    model.eval()
    if method == "suppressed_lowrank":
        stats_lr = lowrank.merge()
    for p in model.parameters():
        p.requires_grad_(False)
    stats = {"method": method, "steps": step, "lr": lr, "forget_acc_at_stop": acc,
             "stopped_by": "rule" if acc <= cfg.stop_forget_acc else "max_steps",
             "stop_rule": f"forget accuracy <= {cfg.stop_forget_acc}"}
    if method == "rmu":
        stats["layer"] = layer
    if method == "suppressed_lowrank":
        stats.update(stats_lr)
        model.lowrank_delta = lowrank.factors()  # {f"{layer}.A": [r, d_mlp], f"{layer}.B": [d_model, r]}
    return model, stats


class LowRankDelta:
    """A trainable rank-r additive update D_l = B_l @ A_l ([d_model, d_mlp], the orientation of
    arch.mlp_out_matrix) on every block's MLP output projection, applied by forward hooks while training (the
    model's own weights stay frozen) and merged into the weights at the end. LoRA init: A random, B zero."""

    def __init__(self, model, rank: int, seed: int):
        self.model, self.rank = model, rank
        self.layers = list(range(arch.n_layers(model)))
        g = torch.Generator().manual_seed(seed)
        self.A, self.B, self.hooks = [], [], ExitStack()
        for layer in self.layers:
            w = arch.mlp_out_matrix(model, layer)
            d_model, d_mlp = w.shape
            a = (torch.randn(rank, d_mlp, generator=g) / d_mlp ** 0.5).to(w.device, w.dtype).requires_grad_(True)
            b = torch.zeros(d_model, rank, device=w.device, dtype=w.dtype, requires_grad=True)
            self.A.append(a)
            self.B.append(b)
            self.hooks.enter_context(mlp_out(model, layer, lambda hidden, out, a=a, b=b: out + (hidden @ a.T) @ b.T))

    def parameters(self) -> list[torch.Tensor]:
        return self.A + self.B

    def factors(self) -> dict[str, torch.Tensor]:
        out = {}
        for layer, a, b in zip(self.layers, self.A, self.B):
            out[f"{layer}.A"], out[f"{layer}.B"] = a.detach().clone(), b.detach().clone()
        return out

    @torch.no_grad()
    def merge(self) -> dict:
        """Removes the hooks, adds B @ A into each projection's weight; returns the update's size."""
        self.hooks.close()
        rel = []
        for layer, a, b in zip(self.layers, self.A, self.B):
            w = arch.mlp_out_matrix(self.model, layer)
            delta = b @ a
            rel.append((delta.norm() / w.norm()).item())
            w.add_(delta)  # for GPT-2's Conv1D, mlp_out_matrix is a transposed view: the add lands in .weight
        return {"rank": self.rank, "layers": self.layers,
                "delta_rel_frobenius": [round(r, 5) for r in rel],
                "delta_rel_frobenius_mean": round(sum(rel) / len(rel), 5)}
