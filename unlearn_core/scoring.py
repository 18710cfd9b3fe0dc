"""Batched teacher-forced scoring: the one forward-pass primitive every audit is built on.

Prompt and answer are tokenised separately and concatenated, so the answer span is exact whatever the
tokenizer does at the boundary. Batches are sorted by length to keep padding (wasted FLOPs) small.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]

    @property
    def ids(self) -> list[int]:
        return list(self.prompt_ids) + list(self.answer_ids)


@dataclass
class AnswerScores:
    """Per-item answer-token statistics from one teacher-forced pass (CPU float32)."""

    logprobs: list[torch.Tensor]  # [len(answer)] log p(y_t | x, y_<t)
    correct: list[torch.Tensor]  # [len(answer)] bool, argmax == label
    mu: list[torch.Tensor] | None = None  # [len(answer)] E_p[log p] at each step (Min-K%++)
    sigma: list[torch.Tensor] | None = None  # [len(answer)] Std_p[log p]

    def mean_logprob(self) -> torch.Tensor:
        return torch.stack([lp.mean() if lp.numel() else torch.tensor(0.0) for lp in self.logprobs])

    def prob(self) -> torch.Tensor:
        """p~ = exp(mean answer log-prob): length-normalised probability."""
        return self.mean_logprob().exp()

    def accuracy(self) -> torch.Tensor:
        """1 where teacher-forced argmax reproduces every answer token (= greedy decoding yields the answer)."""
        return torch.stack([c.all() if c.numel() else torch.tensor(False) for c in self.correct]).float()

    def token_accuracy(self) -> torch.Tensor:
        """Exact memorisation: share of answer tokens where argmax = label."""
        return torch.stack([c.float().mean() if c.numel() else torch.tensor(0.0) for c in self.correct])


def encode(tokenizer, prompts: list[str], answers: list[str]) -> list[Encoded]:
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    p_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    a_ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    return [Encoded(tuple(p), tuple(a)) for p, a in zip(p_ids, a_ids)]


def pad_id_of(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


def input_device(model) -> torch.device:
    """Where input ids must go: the input embedding's device. A model spread over devices (device_map="auto") has
    its first parameter wherever accelerate put it; its embedding is where the forward pass starts, and its outputs
    come back there (accelerate's io_same_device hook on the whole model)."""
    try:
        emb = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # not a Hugging Face model: one device
        emb = None
    weight = getattr(emb, "weight", None)
    return weight.device if isinstance(weight, torch.Tensor) else next(model.parameters()).device


def length_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Index batches of similar length; a batch holds at most batch_size rows and max_tokens padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur, cur_max = [], [], 0
    for i in order:
        new_max = max(cur_max, lengths[i])
        if cur and (len(cur) >= batch_size or (max_tokens and new_max * (len(cur) + 1) > max_tokens)):
            batches.append(cur)
            cur, new_max = [], lengths[i]
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


def _free_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_batched(fn: Callable[[list[int]], None], lengths: list[int], batch_size: int,
                max_tokens: int | None = None, what: str = "forward pass") -> None:
    """fn(batch) on every length batch of item indices; fn stores its results by index. On a CUDA out-of-memory
    error the batch that hit it is halved (cache emptied) and it and the rest are redone, down to one item, so an
    audit sized for one GPU still runs on a smaller one. Rows are independent (right padding, attention mask), so
    the numbers do not depend on the batch size memory allowed."""
    todo = list(range(len(lengths)))
    while todo:
        batches = [[todo[j] for j in b] for b in length_batches([lengths[i] for i in todo], batch_size, max_tokens)]
        failed = None
        for k, batch in enumerate(batches):
            try:
                fn(batch)
            except torch.OutOfMemoryError as exc:
                if len(batch) == 1:
                    raise torch.OutOfMemoryError(
                        f"out of memory in a {what} even with one item ({lengths[batch[0]]} tokens): the model and "
                        "one sequence do not fit; spread the model over more memory (CLI: --max-memory) or use a "
                        f"smaller one ({exc})") from exc
                failed = k
                break  # leave the handler first: its traceback holds the failed batch's tensors
        if failed is None:
            return
        _free_cache()
        batch_size = max(1, len(batches[failed]) // 2)
        _log.warning("out of memory in a %s with %d items: retrying with batches of %d", what,
                     len(batches[failed]), batch_size)
        todo = [i for b in batches[failed:] for i in b]


def right_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, : len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def score_encoded(
    model,
    encoded: list[Encoded],
    pad_id: int,
    batch_size: int = 32,
    with_stats: bool = False,
    max_tokens: int | None = 16384,
) -> AnswerScores:
    """Teacher-forced log-probs of each item's answer tokens. One forward pass per length batch."""
    device = input_device(model)
    n = len(encoded)
    logprobs: list = [None] * n
    correct: list = [None] * n
    mus: list = [None] * n
    sigmas: list = [None] * n
    lengths = [len(e.prompt_ids) + len(e.answer_ids) for e in encoded]

    def run(batch: list[int]) -> None:
        ids, mask = right_pad([encoded[i].ids for i in batch], pad_id, device)
        logits = model(input_ids=ids, attention_mask=mask).logits  # [B, T, V]
        for r, i in enumerate(batch):
            e = encoded[i]
            p, a = len(e.prompt_ids), len(e.answer_ids)
            if a == 0:
                empty = torch.zeros(0)
                logprobs[i], correct[i], mus[i], sigmas[i] = empty, empty.bool(), empty, empty
                continue
            # logits at position t predict token t+1: the answer span is predicted from positions p-1 .. p+a-2
            span = logits[r, p - 1 : p + a - 1].float()  # [a, V]
            logp = F.log_softmax(span, dim=-1)
            labels = torch.tensor(e.answer_ids, device=span.device)
            logprobs[i] = logp.gather(1, labels[:, None])[:, 0].cpu()
            correct[i] = (span.argmax(-1) == labels).cpu()
            if with_stats:
                probs = logp.exp()
                mu = (probs * logp).sum(-1)
                var = (probs * logp.square()).sum(-1) - mu.square()
                mus[i], sigmas[i] = mu.cpu(), var.clamp_min(1e-12).sqrt().cpu()

    run_batched(run, lengths, batch_size, max_tokens, "teacher-forced scoring pass")
    return AnswerScores(logprobs, correct, mus if with_stats else None, sigmas if with_stats else None)


def score_answers(
    model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 32, with_stats: bool = False
) -> AnswerScores:
    return score_encoded(model, encode(tokenizer, prompts, answers), pad_id_of(tokenizer), batch_size, with_stats)


@torch.no_grad()
def left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) with every prompt ending at the last column: generation continues all rows at once."""
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, x in enumerate(seqs):
        ids[r, width - len(x):] = torch.tensor(x)
        mask[r, width - len(x):] = 1
    return ids, mask


def greedy_generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int = 24, batch_size: int = 32
) -> list[str]:
    """Greedy continuations cut at EOS (HF generate with left padding, the standard eval setting)."""
    device = input_device(model)
    pad = pad_id_of(tokenizer)
    enc = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    out: list = [None] * len(prompts)

    def run(batch: list[int]) -> None:
        ids, mask = left_pad([enc[i] for i in batch], pad)
        gen = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        for r, i in enumerate(batch):
            new = gen[r, ids.shape[1]:].tolist()
            if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in new:
                new = new[: new.index(tokenizer.eos_token_id)]
            out[i] = tokenizer.decode(new, skip_special_tokens=True)

    run_batched(run, [len(e) for e in enc], batch_size, what="greedy generation")
    return out
