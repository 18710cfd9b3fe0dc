"""Model construction and causal-LM training for the lab, stopped by a rule (QA accuracy), not a step count."""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from unlearn_core.lab.config import LabConfig
from unlearn_core.scoring import encode, pad_id_of, right_pad, score_encoded


def make_model(cfg: LabConfig, tokenizer) -> torch.nn.Module:
    """Untied input/output embeddings: the suppressed_head control must change the head without the embeddings."""
    torch.manual_seed(cfg.seed)
    common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  tie_word_embeddings=False)
    if cfg.arch == "gpt2":
        config = GPT2Config(n_layer=cfg.n_layer, n_embd=cfg.d_model, n_head=cfg.n_head, n_inner=cfg.d_mlp,
                            n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(num_hidden_layers=cfg.n_layer, hidden_size=cfg.d_model, num_attention_heads=cfg.n_head,
                             num_key_value_heads=cfg.n_head, intermediate_size=cfg.d_mlp,
                             max_position_embeddings=128, **common)
        model = LlamaForCausalLM(config)
    return model


def lm_batches(tokenizer, texts: list[str], batch_size: int, rng: random.Random):
    """Shuffled batches of whole documents (each + EOS), loss on every real token."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = [x + [tokenizer.eos_token_id] for x in ids]
    order = list(range(len(ids)))
    rng.shuffle(order)
    for s in range(0, len(order), batch_size):
        yield [ids[i] for i in order[s : s + batch_size]]


def causal_lm_loss(model, seqs: list[list[int]], pad_id: int) -> torch.Tensor:
    ids, mask = right_pad(seqs, pad_id, next(model.parameters()).device)
    labels = ids.masked_fill(mask == 0, -100)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def qa_accuracy(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    model.eval()
    enc = encode(tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    acc = score_encoded(model, enc, pad_id_of(tokenizer), batch_size=64).accuracy().mean().item()
    model.train()
    return acc


def train_lm(model, tokenizer, texts: list[str], eval_pairs: list[tuple[str, str]], cfg: LabConfig,
             progress: Callable[[int, float], None] | None = None) -> dict:
    """AdamW with linear warm-up; stops once QA accuracy on the trained facts reaches cfg.target_acc."""
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.98))
    steps_per_epoch = -(-len(texts) // cfg.batch_size)
    warmup = 2 * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    pad = pad_id_of(tokenizer)
    model.train()
    acc, epoch = 0.0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        for seqs in lm_batches(tokenizer, texts, cfg.batch_size, rng):
            loss = causal_lm_loss(model, seqs, pad)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        if epoch % cfg.eval_every == 0:
            acc = qa_accuracy(model, tokenizer, eval_pairs)
            if progress:
                progress(epoch, acc)
            if acc >= cfg.target_acc:
                break
    model.eval()
    return {"epochs": epoch, "qa_accuracy": acc, "stopped_by": "rule" if acc >= cfg.target_acc else "max_epochs",
            "final_loss": float(loss.item())}
