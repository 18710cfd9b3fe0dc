"""The forward-pass kernel's scores: answer-token logits, log-probs and argmax over the one answer-span convention.

Answer span: prompt and answer are tokenised separately (scoring.encode); the logits at positions p-1 .. p+a-2
predict the a answer tokens. Hook sites are in model.hooks; a new model family needs one change in arch.py only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearn_core.model.scoring import Encoded, answer_span_mask, input_device, kept_logits, right_pad


def answer_scores(model, batch: list[Encoded], ids: torch.Tensor, mask: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] mean answer-token log-prob, [B] every answer token the argmax) (float32 / bool, CPU) from one pass over
    the right-padded batch that projects only the answer positions; one softmax over all of them, not one per item
    (an item without answer tokens: NaN, False)."""
    span = answer_span_mask(batch, ids.shape[1], ids.device)
    flat = kept_logits(model, span, input_ids=ids, attention_mask=mask).float()  # [n, V], row-major
    labels = torch.tensor([t for e in batch for t in e.answer_ids], dtype=torch.long, device=flat.device)
    owner = span.nonzero()[:, 0]
    lp = token_logprobs(flat, labels)
    n = torch.zeros(len(batch), device=flat.device).index_add_(0, owner, torch.ones_like(lp))
    sums = torch.zeros(len(batch), device=flat.device).index_add_(0, owner, lp)
    wrong = torch.zeros(len(batch), device=flat.device).index_add_(0, owner, (flat.argmax(-1) != labels).float())
    mean = torch.where(n > 0, sums / n.clamp_min(1), torch.nan)
    return mean.cpu(), ((wrong == 0) & (n > 0)).cpu()


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[N] log-prob of each label under its row of logits [N, V] (float32 softmax; differentiable)."""
    return F.log_softmax(logits.float(), -1).gather(1, labels[:, None])[:, 0]


def answer_logits(model, batch: list[Encoded], ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per item the [a, V] logits that predict its answer tokens, from one pass over the right-padded batch that
    projects only those positions onto the vocabulary (`scoring.kept_logits`)."""
    span = answer_span_mask(batch, ids.shape[1], ids.device)
    flat = kept_logits(model, span, input_ids=ids, attention_mask=mask)
    return list(flat.split([len(e.answer_ids) for e in batch]))


def answer_logprob_sums(model, batch: list[Encoded], pad_id: int, answers_only: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable sum of answer-token log-probs per item [B] and answer lengths [B] (for fine-tuning attacks;
    scoring without gradients is scoring.score_encoded).

    answers_only: project only the answer positions onto the vocabulary (`kept_logits`), forward and backward. The
    demo lab's training keeps the full projection: its checkpoints are cached by their config, and another GEMM
    shape in the backward pass may round differently and move the weights a cached lab was built with."""
    ids, mask = right_pad([e.ids for e in batch], pad_id, input_device(model))
    if answers_only:
        span = answer_span_mask(batch, ids.shape[1], ids.device)
        logp = F.log_softmax(kept_logits(model, span, input_ids=ids, attention_mask=mask).float(), dim=-1)
        labels = torch.roll(ids, -1, dims=1)[span]  # position t predicts token t + 1
        tok = logp.gather(1, labels[:, None])[:, 0]
        sums = torch.zeros(ids.shape[0], dtype=tok.dtype, device=tok.device).index_add(0, span.nonzero()[:, 0], tok)
        return sums, span.sum(1).to(tok.dtype)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logp = F.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None])[..., 0]  # [B, T-1]
    span = torch.zeros_like(logp)
    for r, e in enumerate(batch):
        p, a = len(e.prompt_ids), len(e.answer_ids)
        span[r, p - 1 : p + a - 1] = 1.0
    return (logp * span).sum(1), span.sum(1)
