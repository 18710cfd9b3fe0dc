"""Fine-tuning SmolLM2 in its chat format, and the answer statistics every lab stage reads.

Items are encoded with the project's own scoring.encode over PromptFormat's chat rendering, so the lab trains on
exactly the tokens the audit scores: prompt = the chat template over [system, user = question] with the generation
prompt, answer = the answer sentence, then <|im_end|> (SmolLM2's EOS) for the loss. The loss covers the answer and
<|im_end|> only; logits are projected at those positions only (scoring.kept_logits). The input embedding is frozen,
and with it the output head: SmolLM2 ties them (lm_head.weight is embed_tokens.weight), so every fine-tuned
checkpoint shares the base's embedding and head; the 30 blocks and the final norm (106M of 134.5M parameters) train.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearn_core.data.items import PromptFormat, QAItem
from unlearn_core.model.arch import n_layers
from unlearn_core.model.hooks import on_input
from unlearn_core.model.scoring import Encoded, answer_span_mask, encode, kept_logits, right_pad, score_encoded


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 / AMX): there autocast halves a training step; elsewhere
    it is slower than float32 (NOTES: the lab then trains in float32)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(amp: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if amp else nullcontext()


def chat_format(tokenizer, system_prompt: str | None) -> PromptFormat:
    return PromptFormat.chat_format(system_prompt=system_prompt).with_chat_template(
        tokenizer.get_chat_template(), tokenizer.special_tokens_map)


def encode_items(tokenizer, fmt: PromptFormat, items: list[QAItem], answers: list[str] | None = None,
                 eos: bool = False) -> list[Encoded]:
    """The audit's encoding of each item (answers: replacement answer sentences, e.g. a refusal); eos=True appends
    the EOS token to every answer (what training scores)."""
    pairs = [fmt.pair(it, None if answers is None else answers[i]) for i, it in enumerate(items)]
    enc = encode(tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    if eos:
        enc = [Encoded(e.prompt_ids, (*e.answer_ids, tokenizer.eos_token_id)) for e in enc]
    return enc


def check_encoding(tokenizer, fmt: PromptFormat, items: list[QAItem]) -> None:
    """Prompt + answer + EOS must be the start of the template's own rendering of the whole exchange (so the audit's
    separate tokenisation of prompt and answer is the conversation the model was trained on)."""
    for it, e in zip(items, encode_items(tokenizer, fmt, items, eos=True)):
        full = tokenizer.apply_chat_template(fmt.messages(it.question) + [{"role": "assistant", "content": it.answer}],
                                             tokenize=False, **dict(fmt.template_vars))
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        if ids[: len(e.ids)] != e.ids:
            raise RuntimeError(f"chat encoding of {it.question!r} is not the template's rendering of the exchange")


@dataclass
class PassStats:
    """One forward pass over a batch: differentiable per-item answer log-prob sums, and what it says for free."""

    sums: torch.Tensor  # [B] sum of answer-token log-probs (scored tokens, EOS included when encoded)
    n: torch.Tensor  # [B] scored tokens
    correct: torch.Tensor  # [B] bool: argmax reproduces every answer token except a final EOS (the audit's "known")
    mean_lp: torch.Tensor  # [B] mean log-prob over the same tokens as `correct` (p~ = exp), no grad
    token_acc: float  # share of scored tokens the argmax gets right


class _Stop(Exception):
    """Raised by a capture hook once the input of the block of interest is read: the rest of the pass is not needed."""


class FrozenPrefix:
    """The hidden states entering block `start`, per sequence, computed once from `model`.

    While the embedding and every block below `start` stay frozen (trainable_blocks(model, top) with
    start = n_layers - top), these states are the same at every step, so a training step runs blocks start.. only
    (top=8 of SmolLM2's 30 blocks, one thread, 2 busy cores: 0.48 s per sequence for forward + backward, against
    0.66 s when the frozen blocks run again and 1.3 s when all blocks train). Positions do not see padding (causal
    attention, right padding): the answer log-probs equal the full pass's (checked: identical sums). Build it from
    the stage's own starting model: it is valid only for that model's lower blocks."""

    def __init__(self, model, start: int, seqs: list[Encoded], pad_id: int, chunk: int = 32):
        from unlearn_core.model import arch

        self.start, self.states_of = start, {}
        device = next(model.parameters()).device
        todo = list(dict.fromkeys(tuple(e.ids) for e in seqs))
        block = arch.decoder_layers(model)[start]
        got = {}

        def pre_hook(_m, args):
            got["h"] = args[0].detach()  # the block's hidden-state input (passed positionally by Llama's loop)
            raise _Stop

        with on_input(block, pre_hook), torch.no_grad():
            for s in range(0, len(todo), chunk):
                rows = todo[s : s + chunk]
                ids, mask = right_pad([list(r) for r in rows], pad_id, device)
                try:
                    model.model(input_ids=ids, attention_mask=mask, use_cache=False)
                except _Stop:
                    pass
                for r, seq in enumerate(rows):
                    self.states_of[seq] = got["h"][r, : len(seq)].float().clone()  # [T, d]

    def states(self, batch: list[Encoded], device) -> torch.Tensor:
        """[B, T, d] right-padded (zeros) states entering block `start`."""
        width = max(len(e.ids) for e in batch)
        first = self.states_of[tuple(batch[0].ids)]
        out = torch.zeros(len(batch), width, first.shape[-1], dtype=first.dtype)
        for r, e in enumerate(batch):
            out[r, : len(e.ids)] = self.states_of[tuple(e.ids)]
        return out.to(device)

    @contextmanager
    def top_only(self, model):
        """The model with only blocks start.. in its layer list: a pass from inputs_embeds = the cached states."""
        from unlearn_core.model import arch

        layers = arch.decoder_layers(model)
        inner = model.model
        inner.layers = torch.nn.ModuleList(list(layers)[self.start :])
        try:
            yield model
        finally:
            inner.layers = layers


def answer_pass(model, batch: list[Encoded], pad_id: int, amp: bool, eos_id: int | None,
                prefix: FrozenPrefix | None = None) -> PassStats:
    """Forward over right-padded [prompt + answer] rows, logits only where they predict answer tokens. With a
    `prefix`, the pass starts at its block from the cached states (the blocks below are frozen)."""
    device = next(model.parameters()).device
    ids, mask = right_pad([e.ids for e in batch], pad_id, device)
    span = answer_span_mask(batch, ids.shape[1], device)
    with autocast(amp):
        if prefix is None:
            logits = kept_logits(model, span, input_ids=ids, attention_mask=mask)  # [N, V]
        else:
            with prefix.top_only(model):
                logits = kept_logits(model, span, inputs_embeds=prefix.states(batch, device), attention_mask=mask,
                                     use_cache=False)
    logp = F.log_softmax(logits.float(), -1)
    labels = torch.roll(ids, -1, dims=1)[span]  # position t predicts token t + 1
    tok = logp.gather(1, labels[:, None])[:, 0]
    owner = span.nonzero()[:, 0]
    sums = torch.zeros(len(batch), device=device).index_add(0, owner, tok)
    with torch.no_grad():
        right = logits.argmax(-1) == labels
        last = torch.tensor([len(e.prompt_ids) + len(e.answer_ids) - 2 for e in batch], device=device)
        pos = span.nonzero()[:, 1]
        final_eos = (pos == last[owner]) & (labels == eos_id) if eos_id is not None else torch.zeros_like(right)
        counted = (~final_eos).float()
        wrong = torch.zeros(len(batch), device=device).index_add(0, owner, (~right).float() * counted)
        k = torch.zeros(len(batch), device=device).index_add(0, owner, counted)
        lp = torch.zeros(len(batch), device=device).index_add(0, owner, tok.detach() * counted)
        mean_lp = lp / k.clamp_min(1)
    return PassStats(sums, span.sum(1).float(), (wrong == 0) & (k > 0), mean_lp, float(right.float().mean()))


def nll(stats: PassStats) -> torch.Tensor:
    """Token-mean negative log-likelihood over the batch (the usual causal-LM loss)."""
    return -stats.sums.sum() / stats.n.sum()


def accuracy(model, enc: list[Encoded], pad_id: int) -> float:
    """Teacher-forced exact match (float32, the audit's scoring): share of items whose every answer token is the
    argmax; an exact fraction."""
    model.eval()
    acc = float(score_encoded(model, enc, pad_id, batch_size=64).accuracy().sum()) / len(enc)
    return acc


@torch.no_grad()
def known_share(model, enc: list[Encoded], pad_id: int, eos_id: int, prefix: FrozenPrefix | None,
                batch_size: int = 32) -> float:
    """accuracy()'s number read from answer passes (a final EOS not counted), from the prefix's cached states: the
    per-epoch check of a lab whose lower blocks are frozen costs a pass through the trained blocks only."""
    was = model.training
    model.eval()
    known = sum(int(answer_pass(model, enc[s : s + batch_size], pad_id, False, eos_id, prefix).correct.sum())
                for s in range(0, len(enc), batch_size))
    model.train(was)
    return known / len(enc)


def mean_p(model, enc: list[Encoded], pad_id: int) -> float:
    model.eval()
    return float(score_encoded(model, enc, pad_id, batch_size=64).prob().mean())


def trainable_blocks(model, top: int | None = None) -> list[torch.nn.Parameter]:
    """The parameters a lab stage trains, marked trainable, every other one frozen: all blocks and the final norm
    (top=None), or only the last `top` blocks and the final norm (the reduced CI lab: autograd then stops at the
    first trained block, so a step costs about a third of a full one at top=8 of 30). The tied embedding / head is
    always frozen."""
    from unlearn_core.model import arch

    blocks = arch.decoder_layers(model)
    kept = blocks if top is None else blocks[len(blocks) - top:]
    norm = arch.final_norm(model)
    params = [p for b in kept for p in b.parameters()] + ([] if norm is None else list(norm.parameters()))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params


def finetune(model, train: list[Encoded], check: list[Encoded], pad_id: int, eos_id: int, *, lr: float,
             batch_size: int, max_epochs: int, target_acc: float, check_from: float, seed: int, amp: bool,
             extra_epochs: int = 0, train_blocks: int | None = None, say: Callable[[str], None] | None = None) -> dict:
    """AdamW (constant lr, no weight decay, clip 1.0) on `train` (answers with EOS) in seeded random order until
    teacher-forced exact match on `check` (answers without EOS, float32) reaches target_acc, then `extra_epochs`
    more; capped at max_epochs. The check runs once an epoch's own token accuracy reaches check_from."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    params = trainable_blocks(model, train_blocks)
    prefix = None if train_blocks is None else FrozenPrefix(model, n_layers(model) - train_blocks, train, pad_id)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    reached, acc, epoch, loss_v, t0 = None, 0.0, 0, float("nan"), time.time()
    model.train()
    for epoch in range(1, max_epochs + 1):
        order = list(range(len(train)))
        rng.shuffle(order)
        right = total = 0.0
        for s in range(0, len(order), batch_size):
            st = answer_pass(model, [train[i] for i in order[s : s + batch_size]], pad_id, amp, eos_id, prefix)
            loss = nll(st)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            right, total, loss_v = right + st.token_acc * float(st.n.sum()), total + float(st.n.sum()), loss.item()
        if reached is None and (right / total >= check_from or epoch == max_epochs):
            acc = accuracy(model, check, pad_id) if prefix is None else known_share(model, train, pad_id, eos_id,
                                                                                    prefix)
            model.train()
            if acc >= target_acc:
                reached = epoch
        if say:
            say(f"epoch {epoch} token acc {right / total:.3f}" + (f" exact {acc:.3f}" if reached or acc else ""))
        if reached is not None and epoch >= reached + extra_epochs:
            break
    model.eval()
    if (extra_epochs and reached is not None) or prefix is not None:  # the stored number: the full float32 pass
        acc = accuracy(model, check, pad_id)
    return {"epochs": epoch, "lr": lr, "batch_size": batch_size, "data_seed": seed, "qa_accuracy": acc,
            "trained_blocks": "all" if train_blocks is None else f"last {train_blocks}",
            "target_reached_at_epoch": reached, "final_loss": round(loss_v, 5), "amp_bf16": amp,
            "stopped_by": "rule" if reached is not None else "max_epochs",
            "stop_rule": f"teacher-forced exact match on the trained facts >= {target_acc}"
                         + (f", then {extra_epochs} more epochs" if extra_epochs else ""),
            "seconds": round(time.time() - t0, 1)}
