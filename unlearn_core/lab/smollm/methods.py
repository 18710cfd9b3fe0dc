"""Unlearning on the SmolLM2 original, each run stopped by a rule, and the planted controls.

Methods (published recipes, open-unlearning's loss definitions, scaled to a 135M model and a forget set of tens of
facts: every step sees the whole forget set and a retain batch; constant lr, AdamW, clip 1.0):
- GradDiff: -NLL(forget) + alpha NLL(retain).
- NPO (Zhang et al. 2024) + retain NLL: -(2/beta) logsigmoid(-beta (log p(y|x) - log p_ref(y|x))), p_ref = original.
- SimNPO (Fan et al. 2024): reference-free and length-normalised, -(2/beta) logsigmoid(beta (NLL(y|x)/|y| - delta)),
  weighted gamma, + alpha NLL(retain) (OU's form: the margin is delta).
- RMU (Li et al. 2024): one middle block's MLP is trained to push that block's output on forget tokens towards c u
  (u a fixed random unit vector, c the steering coefficient) and to keep it on retain tokens; loss over the question
  and answer tokens (the shared system-prompt prefix is the same for both sets, so it is left out).
- IdkNLL: the forget questions trained to answer a refusal ("I don't know." and variants) + alpha NLL(retain).
Stop rule: teacher-forced forget accuracy <= stop_forget_acc, read from the step's own forward pass (the model
before the step) and confirmed in float32; else max_steps.

Planted controls (truth known):
- suppressed_head: GradDiff on the last block(s) and the final norm only. The head is NOT trained: SmolLM2 ties it to
  the input embedding, so training it would change every representation. Every earlier block's output on any input
  is the original's, bit for bit: the knowledge is provably inside (truth: suppressed).
- suppressed_lowrank: GradDiff through a rank-r additive update on every block's MLP down_proj (the original weights
  frozen, lab.unlearn.LowRankDelta), merged at the end and saved under deltas/ (truth: suppressed).
- over_unlearned: the retrained twin (which never saw the forget facts), gradient ascent on the forget set until its
  mean forget answer p~ is at most over_ratio x the reference's (truth: deleted).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import torch
import torch.nn.functional as F

from unlearn_core.lab.smollm.config import SmolUnlearnConfig
from unlearn_core.lab.smollm.train import FrozenPrefix, accuracy, answer_pass, autocast, mean_p, nll, trainable_blocks
from unlearn_core.lab.unlearn import LowRankDelta, rmu_layer
from unlearn_core.model import arch
from unlearn_core.model.hooks import block_output, on_output
from unlearn_core.model.scoring import Encoded, right_pad

RUNS = ("graddiff", "npo", "simnpo", "rmu", "idknll", "suppressed_head", "suppressed_lowrank")


class _Stop(Exception):
    """Raised by a capture hook once the block of interest ran: the rest of the forward pass is not needed."""


def _capture(model, batch: list[Encoded], pad_id: int, layer: int, amp: bool, prefix: FrozenPrefix | None = None):
    """(block `layer`'s output [B, T, d] float32, token mask [B, T]); the pass stops after that block. With a
    `prefix` (layer >= its start), the pass starts at the prefix's block from its cached states."""
    device = next(model.parameters()).device
    ids, mask = right_pad([e.ids for e in batch], pad_id, device)
    got = {}

    def hook(_m, _i, out):
        got["h"] = block_output(out)
        raise _Stop

    try:
        with on_output(arch.decoder_layers(model)[layer], hook), autocast(amp):
            if prefix is None:
                model.model(input_ids=ids, attention_mask=mask, use_cache=False)
            else:
                with prefix.top_only(model):
                    model.model(inputs_embeds=prefix.states(batch, device), attention_mask=mask, use_cache=False)
    except _Stop:
        pass
    return got["h"].float(), mask


def _span_mask(batch: list[Encoded], mask: torch.Tensor, start: int) -> torch.Tensor:
    """[B, T] float: real tokens from position `start` on (question and answer: after the shared prefix)."""
    m = mask.clone().float()
    m[:, :start] = 0.0
    return m


def shared_prefix(batch: list[Encoded]) -> int:
    first = batch[0].prompt_ids
    k = min(len(e.prompt_ids) for e in batch)
    for e in batch:
        while k and e.prompt_ids[:k] != first[:k]:
            k -= 1
    return k


def unlearn(method: str, original, forget: list[Encoded], retain: list[Encoded], forget_check: list[Encoded],
            pad_id: int, eos_id: int, cfg: SmolUnlearnConfig, seed: int, amp: bool,
            idk: list[list[Encoded]] | None = None, say: Callable[[str], None] | None = None,
            train_blocks: int | None = None):
    """(model, stats); `original` is trained in place (load a fresh copy). forget / retain: answers with EOS
    (training); idk: per forget item its question with each refusal (IdkNLL draws one per item and step);
    forget_check: the audit's forget encodings (no EOS), for the float32 confirmation of the rule. train_blocks:
    the lab's trained range (the last N blocks; None: all): the methods update only it (RMU: a block in its middle),
    and passes start at its first block from cached states (FrozenPrefix), except the low-rank control's, which
    edits every block."""
    if method not in RUNS:
        raise ValueError(f"unknown method {method!r}; choose one of {RUNS}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = original
    for p in model.parameters():
        p.requires_grad_(False)
    lr = {"graddiff": cfg.graddiff_lr, "npo": cfg.npo_lr, "simnpo": cfg.simnpo_lr, "rmu": cfg.rmu_lr,
          "idknll": cfg.idk_lr, "suppressed_head": cfg.head_lr, "suppressed_lowrank": cfg.lowrank_lr}[method]
    extra: dict = {}
    n = arch.n_layers(model)
    if train_blocks is not None and method != "suppressed_lowrank":
        seqs = forget + retain + [e for variants in (idk or []) for e in variants]
        prefix = FrozenPrefix(model, n - train_blocks, seqs, pad_id)
    else:
        prefix = None
    if method == "rmu":
        layer = rmu_layer(model) if train_blocks is None else n - train_blocks + max(0, train_blocks // 2 - 1)
        frozen = copy.deepcopy(model).eval()
        params = list(arch.mlp_module(model, layer).parameters())
        start = shared_prefix(forget + retain)
        with torch.no_grad():
            h, m = _capture(frozen, forget, pad_id, layer, False, prefix)
            sel = _span_mask(forget, m, start)
            scale = float((h.norm(dim=-1) * sel).sum() / sel.sum())
        u = torch.rand(h.shape[-1], generator=torch.Generator().manual_seed(seed))
        control = cfg.rmu_steer * scale * u / u.norm()  # [d]: norm c = rmu_steer x the mean activation norm
        extra = {"layer": layer, "steering_norm": round(cfg.rmu_steer * scale, 3), "mean_activation_norm":
                 round(scale, 3), "alpha": cfg.rmu_alpha, "loss_from_token": start}
    elif method == "suppressed_head":
        if train_blocks is not None and cfg.head_blocks > train_blocks:
            raise ValueError(f"head_blocks {cfg.head_blocks} > the lab's trained blocks {train_blocks}")
        blocks = arch.decoder_layers(model)[-cfg.head_blocks:]
        params = [p for b in blocks for p in b.parameters()] + list(arch.final_norm(model).parameters())
        extra = {"trained": f"last {cfg.head_blocks} block(s) + final norm; head not trained (tied to the input "
                            "embedding)", "n_params": sum(p.numel() for p in params)}
    elif method == "suppressed_lowrank":
        lowrank = LowRankDelta(model, cfg.lowrank_rank, seed)
        params = lowrank.parameters()
    else:
        params = trainable_blocks(model, train_blocks)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    ref_sums = None
    acc, step, confirmed = 1.0, 0, None
    while True:
        rb = rng.sample(retain, min(cfg.retain_batch_size, len(retain)))
        if method in ("rmu", "idknll"):  # their loss does not read the forget answers: the pass is the check only
            with torch.no_grad():
                fs = answer_pass(model, forget, pad_id, amp, eos_id, prefix)
        else:
            fs = answer_pass(model, forget, pad_id, amp, eos_id, prefix)
        acc = float(fs.correct.float().mean())
        if acc <= cfg.stop_forget_acc:  # the rule, read from this pass (bf16 under amp): confirm in float32
            confirmed = accuracy(model, forget_check, pad_id)
            model.train()
            if confirmed <= cfg.stop_forget_acc:
                acc = confirmed
                break
        if step >= cfg.max_steps:
            break
        step += 1
        if method in ("graddiff", "suppressed_head", "suppressed_lowrank"):
            loss = -nll(fs) + cfg.retain_weight * nll(answer_pass(model, rb, pad_id, amp, eos_id, prefix))
        elif method == "npo":
            if ref_sums is None:  # the first pass is the original's: log p_ref, once
                ref_sums = fs.sums.detach()
            ratio = fs.sums - ref_sums
            loss = -(2 / cfg.npo_beta) * F.logsigmoid(-cfg.npo_beta * ratio).mean() \
                + cfg.retain_weight * nll(answer_pass(model, rb, pad_id, amp, eos_id, prefix))
        elif method == "simnpo":
            per_token_nll = -fs.sums / fs.n
            forget_loss = -(2 / cfg.simnpo_beta) * F.logsigmoid(cfg.simnpo_beta * (per_token_nll - cfg.simnpo_delta))
            loss = cfg.simnpo_gamma * forget_loss.mean() \
                + cfg.retain_weight * nll(answer_pass(model, rb, pad_id, amp, eos_id, prefix))
        elif method == "idknll":
            ib = [rng.choice(variants) for variants in idk]
            loss = nll(answer_pass(model, ib, pad_id, amp, eos_id, prefix)) \
                + cfg.retain_weight * nll(answer_pass(model, rb, pad_id, amp, eos_id, prefix))
        else:  # rmu
            hf, mf = _capture(model, forget, pad_id, layer, amp, prefix)
            hr, mr = _capture(model, rb, pad_id, layer, amp, prefix)
            with torch.no_grad():
                hr0, _ = _capture(frozen, rb, pad_id, layer, False, prefix)
            sf, sr = _span_mask(forget, mf, start), _span_mask(rb, mr, start)
            lf = (((hf - control) ** 2).mean(-1) * sf).sum() / sf.sum()
            lr_ = (((hr - hr0) ** 2).mean(-1) * sr).sum() / sr.sum()
            loss = lf + cfg.rmu_alpha * lr_
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if say:
            say(f"step {step} forget acc {acc:.2f} loss {loss.item():.3f}")
    model.eval()
    stats = {"method": method, "steps": step, "lr": lr, "forget_acc_at_stop": acc,
             "trained_blocks": "all" if train_blocks is None else f"last {train_blocks}",
             "stopped_by": "rule" if acc <= cfg.stop_forget_acc else "max_steps",
             "stop_rule": f"forget accuracy <= {cfg.stop_forget_acc} (teacher-forced, confirmed in float32)", **extra}
    if method == "suppressed_lowrank":
        stats.update(lowrank.merge())
        model.lowrank_delta = lowrank.factors()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, stats


def over_unlearn(retrained, forget: list[Encoded], forget_check: list[Encoded], pad_id: int, eos_id: int,
                 target_p: float, cfg: SmolUnlearnConfig, seed: int, amp: bool,
                 say: Callable[[str], None] | None = None, train_blocks: int | None = None):
    """(model, stats): gradient ascent on the whole forget set until mean forget answer p~ (the audit's: answer tokens
    without EOS, float32) <= target_p."""
    torch.manual_seed(seed)
    model = retrained
    params = trainable_blocks(model, train_blocks)
    prefix = None if train_blocks is None else FrozenPrefix(model, arch.n_layers(model) - train_blocks, forget, pad_id)
    opt = torch.optim.AdamW(params, lr=cfg.over_lr, weight_decay=0.0)
    model.train()
    step, p = 0, float("inf")
    while True:
        fs = answer_pass(model, forget, pad_id, amp, eos_id, prefix)
        p = float(fs.mean_lp.exp().mean())
        if p <= target_p:
            p = mean_p(model, forget_check, pad_id)
            model.train()
            if p <= target_p:
                break
        if step >= cfg.max_steps:
            p = mean_p(model, forget_check, pad_id)
            break
        step += 1
        loss = -nll(fs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if say:
            say(f"step {step} forget p {p:.3f}")
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model, {"method": "gradient ascent on the retrained twin", "steps": step, "lr": cfg.over_lr,
                   "forget_p_at_stop": p, "target_p": target_p, "stopped_by": "rule" if p <= target_p else "max_steps",
                   "stop_rule": f"mean forget answer p~ <= {cfg.over_ratio:g} x the reference's (float32)"}
