"""Model construction and causal-LM training for the lab, stopped by a rule (QA accuracy), not a step count."""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

from unlearn_core.lab.config import LabConfig
from unlearn_core.model.scoring import encode, pad_id_of, right_pad, score_encoded


def make_model(cfg: LabConfig, tokenizer, seed: int | None = None) -> torch.nn.Module:
    """A fresh random model (init seeded by `seed`, default cfg.seed). Untied input/output embeddings: the
    suppressed_head control must change the head without the embeddings."""
    torch.manual_seed(cfg.seed if seed is None else seed)
    common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  tie_word_embeddings=False)
    if cfg.arch == "gpt2":
        config = GPT2Config(n_layer=cfg.n_layer, n_embd=cfg.d_model, n_head=cfg.n_head, n_inner=cfg.d_mlp,
                            n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
        model = GPT2LMHeadModel(config)
    elif cfg.arch == "llama":
        config = LlamaConfig(num_hidden_layers=cfg.n_layer, hidden_size=cfg.d_model, num_attention_heads=cfg.n_head,
                             num_key_value_heads=cfg.n_head, intermediate_size=cfg.d_mlp,
                             max_position_embeddings=128, **common)
        model = LlamaForCausalLM(config)
    elif cfg.arch == "gpt_neox":
        config = GPTNeoXConfig(num_hidden_layers=cfg.n_layer, hidden_size=cfg.d_model, num_attention_heads=cfg.n_head,
                               intermediate_size=cfg.d_mlp, max_position_embeddings=128, hidden_dropout=0.0,
                               attention_dropout=0.0, use_parallel_residual=True,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "partial_rotary_factor": 0.25}, **common)
        model = GPTNeoXForCausalLM(config)
    else:
        raise ValueError(f"unknown arch {cfg.arch!r}")
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
    correct = score_encoded(model, enc, pad_id_of(tokenizer), batch_size=64).accuracy()
    acc = float(correct.sum().item()) / len(pairs)  # an exact fraction (float32 means miss rule boundaries)
    model.train()
    return acc


def train_lm(model, tokenizer, texts: list[str], eval_pairs: list[tuple[str, str]], cfg: LabConfig,
             progress: Callable[[int, float], None] | None = None, *, lr: float | None = None,
             seed: int | None = None, max_epochs: int | None = None, overtrain: float = 0.0) -> dict:
    """AdamW with linear warm-up; stops once QA accuracy on `eval_pairs` reaches cfg.target_acc (checked every
    cfg.eval_every epochs), or, with overtrain > 0, that share of epochs later. `seed` sets the data order (default
    cfg.seed); lr and max_epochs default to the pretraining values cfg.lr and cfg.max_epochs."""
    lr = cfg.lr if lr is None else lr
    seed = cfg.seed if seed is None else seed
    max_epochs = cfg.max_epochs if max_epochs is None else max_epochs
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    steps_per_epoch = -(-len(texts) // cfg.batch_size)
    warmup = 2 * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    pad = pad_id_of(tokenizer)
    model.train()
    acc, epoch, loss = 0.0, 0, torch.tensor(float("nan"))
    stop_at, reached = None, None
    for epoch in range(1, max_epochs + 1):
        for seqs in lm_batches(tokenizer, texts, cfg.batch_size, rng):
            loss = causal_lm_loss(model, seqs, pad)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        if stop_at is not None:
            if epoch >= stop_at:
                break
            continue
        if epoch % cfg.eval_every == 0 or epoch == max_epochs:
            acc = qa_accuracy(model, tokenizer, eval_pairs)
            if progress:
                progress(epoch, acc)
            if acc >= cfg.target_acc:
                reached = epoch
                if overtrain <= 0:
                    break
                stop_at = min(max_epochs, epoch + max(1, round(overtrain * epoch)))
    model.eval()
    if reached is not None and overtrain > 0:
        acc = qa_accuracy(model, tokenizer, eval_pairs)
    out = {"epochs": epoch, "lr": lr, "data_seed": seed, "qa_accuracy": acc,
           "stopped_by": "rule" if reached is not None or acc >= cfg.target_acc else "max_epochs",
           "final_loss": float(loss.item())}
    if overtrain > 0:
        out["target_reached_at_epoch"] = reached
    return out
