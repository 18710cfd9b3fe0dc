"""Batched teacher-forced scoring: the one forward-pass primitive every audit is built on.

Prompt and answer are tokenised separately and concatenated, so the answer span is exact whatever the
tokenizer does at the boundary. Batches are sorted by length to keep padding (wasted FLOPs) small.
"""

from __future__ import annotations

import inspect
import logging
import sys
import weakref
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
    p_ids = prompt_ids(tokenizer, prompts)
    a_ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    return [Encoded(tuple(p), tuple(a)) for p, a in zip(p_ids, a_ids)]


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Prompts tokenised with the tokenizer's special tokens (its BOS), except that a prompt whose text already starts
    with the BOS text (a chat template that writes it, as Llama 3's does) does not get a second one: the same ids as
    apply_chat_template, which tokenises its rendering without special tokens."""
    ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    if not bos or bos_id is None:
        return ids
    return [x[1:] if p.startswith(bos) and len(x) > 1 and x[0] == x[1] == bos_id else x for p, x in zip(prompts, ids)]


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


def answer_span_mask(batch: list[Encoded], width: int, device=None) -> torch.Tensor:
    """[B, T] bool over right-padded rows: positions p-1 .. p+a-2, whose outputs predict the answer tokens (logits at
    position t predict token t+1)."""
    p = torch.tensor([len(e.prompt_ids) for e in batch])[:, None]
    a = torch.tensor([len(e.answer_ids) for e in batch])[:, None]
    t = torch.arange(width)[None, :]
    return ((t >= p - 1) & (t < p + a - 1)).to(device)


def last_prompt_mask(batch: list[Encoded], width: int, device=None) -> torch.Tensor:
    """[B, T] bool over right-padded prompt-only rows: the last prompt token, whose output predicts the first
    answer token."""
    p = torch.tensor([len(e.prompt_ids) for e in batch])[:, None]
    return (torch.arange(width)[None, :] == p - 1).to(device)


_KEEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> takes a logits_to_keep mask


def _takes_keep_mask(model) -> bool:
    """Whether the model's forward projects only the positions of a [B, T] bool `logits_to_keep` mask: the causal
    LMs of the pinned transformers do it through `slice_logits_to_keep`; a model from elsewhere (custom code, a
    wrapper) gets the full pass, whose logits are then selected."""
    try:
        return _KEEPS[model]
    except (KeyError, TypeError):
        pass
    cls = type(model)
    try:
        takes = "logits_to_keep" in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        takes = False
    ok = takes and cls.__module__.startswith("transformers.") and hasattr(sys.modules.get(cls.__module__),
                                                                          "slice_logits_to_keep")
    try:
        _KEEPS[model] = ok
    except TypeError:
        pass
    return ok


def kept_logits(model, keep: torch.Tensor, **inputs) -> torch.Tensor:
    """[n, V] logits at the True positions of keep ([B, T] bool), row by row: the same numbers as
    `model(**inputs).logits[keep]`, with the output projection run on those positions only.

    Why: the scored answer is a few of a sequence's tokens. On the demo lab (512-token vocabulary) the projection is
    ~8% of a forward pass; at GPT-2's 50,257 tokens it is ~30% of the FLOPs, and [B, T, V] logits (3.3 GB for
    integrated gradients' 16,384 rows) are the pass's largest tensor."""
    return kept_forward(model, keep, **inputs)[0]


def _spread(model) -> bool:
    """Whether accelerate placed the model's modules on more than one device (device_map="auto")."""
    return len({str(d) for d in (getattr(model, "hf_device_map", None) or {}).values()}) > 1


def kept_forward(model, keep: torch.Tensor, **inputs):
    """(kept_logits, the model's output): for a caller that also needs the pass's cache.

    A model spread over devices slices its final hidden states where its last block left them, not on the input
    device the caller's mask is on: it gets the mask on the CPU, which indexes a tensor on any device."""
    if _takes_keep_mask(model):
        out = model(**inputs, logits_to_keep=keep.cpu() if _spread(model) else keep)
        if out.logits.dim() == 2 and out.logits.shape[0] == int(keep.sum()):
            return out.logits, out
        _KEEPS[model] = False  # a model that reads the mask another way: the full pass from now on
    out = model(**inputs)
    return out.logits[keep], out


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
    share_prompts: bool = False,
) -> AnswerScores:
    """Teacher-forced log-probs of each item's answer tokens. One forward pass per length batch.

    share_prompts: items with the SAME prompt (the truth ratio scores 5-7 answers per question) run the prompt once
    and their answers on its KV cache (`_score_shared`), checked once per model against the plain pass. Off by
    default: a caller whose hooks act per forward pass (noise, steering at a position) must see whole sequences."""
    n = len(encoded)
    out = _Rows(n, with_stats)
    # a group runs as one batch: groups larger than a batch may hold are scored the plain way
    groups = [g for g in _prompt_groups(encoded) if len(g) <= batch_size] if share_prompts else []
    if groups and _sharing_works(model, encoded, groups, pad_id):
        oom = False
        try:
            _score_shared(model, encoded, groups, pad_id, batch_size, max_tokens, out)
        except torch.OutOfMemoryError:  # even one group does not fit: the plain pass can split down to one row
            oom = True
        if oom:  # outside the handler: its traceback holds the failed batch's tensors
            _free_cache()
            _log.warning("out of memory in a shared-prompt scoring pass: the rest is scored in plain batches")
    _score_plain(model, encoded, [i for i in range(n) if out.logprobs[i] is None], pad_id, batch_size, max_tokens,
                 out)
    return AnswerScores(out.logprobs, out.correct, out.mu if with_stats else None,
                        out.sigma if with_stats else None)


class _Rows:
    """Per-item answer statistics, filled by index from either scoring path."""

    def __init__(self, n: int, with_stats: bool):
        self.with_stats = with_stats
        self.logprobs: list = [None] * n
        self.correct: list = [None] * n
        self.mu: list = [None] * n
        self.sigma: list = [None] * n

    def put(self, items: list[int], flat: torch.Tensor, answers: list[tuple[int, ...]]) -> None:
        """flat [sum of answer lengths, V]: the logits that predict the answers of `items`, in order; one softmax over
        all of them (per-item calls were most of a small model's scoring overhead)."""
        lengths = [len(a) for a in answers]
        flat = flat.float()
        logp = F.log_softmax(flat, dim=-1)
        labels = torch.tensor([t for a in answers for t in a], dtype=torch.long, device=flat.device)
        stats = {"logprobs": logp.gather(1, labels[:, None])[:, 0], "correct": flat.argmax(-1) == labels}
        if self.with_stats:
            probs = logp.exp()
            mu = (probs * logp).sum(-1)
            stats["mu"] = mu
            stats["sigma"] = ((probs * logp.square()).sum(-1) - mu.square()).clamp_min(1e-12).sqrt()
        for name, values in stats.items():
            column = getattr(self, name)
            for i, part in zip(items, values.cpu().split(lengths), strict=True):
                column[i] = part.clone()  # its own storage: a view would keep (and serialise) the whole batch


def _score_plain(model, encoded: list[Encoded], items: list[int], pad_id: int, batch_size: int,
                 max_tokens: int | None, out: _Rows) -> None:
    if not items:
        return
    device = input_device(model)

    def run(batch: list[int]) -> None:
        rows = [items[j] for j in batch]
        ids, mask = right_pad([encoded[i].ids for i in rows], pad_id, device)
        keep = answer_span_mask([encoded[i] for i in rows], ids.shape[1], device)
        logits = kept_logits(model, keep, input_ids=ids, attention_mask=mask)  # [answer tokens, V]
        out.put(rows, logits, [encoded[i].answer_ids for i in rows])

    run_batched(run, [len(encoded[i].prompt_ids) + len(encoded[i].answer_ids) for i in items], batch_size,
                max_tokens, "teacher-forced scoring pass")


def _prompt_groups(encoded: list[Encoded]) -> list[list[int]]:
    """Indices of items that share their prompt, where at least two do (prompts of 2+ tokens: the last prompt token
    is fed with the answer, the rest is the shared prefix)."""
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(encoded):
        if len(e.prompt_ids) >= 2:
            by_prompt.setdefault(e.prompt_ids, []).append(i)
    return [g for g in by_prompt.values() if len(g) >= 2]


def _score_shared(model, encoded: list[Encoded], groups: list[list[int]], pad_id: int, batch_size: int,
                  max_tokens: int | None, out: _Rows) -> None:
    """Each group's prompt prefix (all but its last token) once, left-padded so every prefix ends at one column;
    then every answer of the group on that prefix's keys and values: [last prompt token, answer[:-1]] with positions
    continuing the prefix's. The logits are those of the plain pass up to float rounding (`_sharing_works`)."""
    device = input_device(model)
    largest = max(len(g) for g in groups)

    def run(batch: list[int]) -> None:
        gs = [groups[k] for k in batch]
        prefixes = [encoded[g[0]].prompt_ids[:-1] for g in gs]
        width = max(len(p) for p in prefixes)
        pids = torch.full((len(gs), width), pad_id, dtype=torch.long)
        pmask = torch.zeros_like(pids)
        for r, p in enumerate(prefixes):
            pids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
            pmask[r, width - len(p):] = 1
        pids, pmask = pids.to(device), pmask.to(device)
        ppos = (pmask.cumsum(-1) - 1).clamp_min(0)
        first = model(input_ids=pids, attention_mask=pmask, position_ids=ppos, use_cache=True)
        cache = getattr(first, "cache", None) or getattr(first, "past_key_values", None)
        rows = [i for g in gs for i in g]
        owner = torch.tensor([r for r, g in enumerate(gs) for _ in g], device=device)
        cache.reorder_cache(owner)
        conts = [[encoded[i].prompt_ids[-1], *encoded[i].answer_ids[:-1]] for i in rows]
        cids, cmask = right_pad(conts, pad_id, device)
        start = torch.tensor([len(prefixes[r]) for r in owner.tolist()], device=device)
        cpos = start[:, None] + torch.arange(cids.shape[1], device=device)[None, :]
        lengths = torch.tensor([len(encoded[i].answer_ids) for i in rows], device=device)
        keep = torch.arange(cids.shape[1], device=device)[None, :] < lengths[:, None]  # each answer's own columns
        logits = kept_logits(model, keep, input_ids=cids, attention_mask=torch.cat([pmask[owner], cmask], 1),
                             position_ids=cpos, cache=cache, use_cache=True)  # [answer tokens, V]
        out.put(rows, logits, [encoded[i].answer_ids for i in rows])

    lengths = [len(encoded[g[0]].prompt_ids) + max(len(encoded[i].answer_ids) for i in g) for g in groups]
    run_batched(run, lengths, max(1, batch_size // largest), max_tokens and max(1, max_tokens // largest),
                "teacher-forced scoring pass (shared prompts)")


_SHARING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> does the shared path match


def _sharing_works(model, encoded: list[Encoded], groups: list[list[int]], pad_id: int) -> bool:
    """Once per model: the shared-prompt path on a sample (two groups of different prompt lengths where there are)
    against the plain pass. A model whose forward takes no cache or positions this way, or gives other numbers
    (a custom architecture), is scored the plain way: slower, never different."""
    try:
        return _SHARING[model]
    except (KeyError, TypeError):
        pass
    sample = sorted(groups, key=lambda g: len(encoded[g[0]].prompt_ids))
    sample = [sample[0], sample[-1]] if len(sample) > 1 else sample
    items = [i for g in sample for i in g[:3]]
    sub = [encoded[i] for i in items]
    a, b = _Rows(len(sub), False), _Rows(len(sub), False)
    try:
        _score_plain(model, sub, list(range(len(sub))), pad_id, len(sub), None, a)
        _score_shared(model, sub, _prompt_groups(sub), pad_id, len(sub), None, b)
        dtype = next(model.parameters()).dtype
        tol = 1e-3 if dtype == torch.float32 else 0.1
        ok = all(torch.allclose(x, y, atol=tol) for x, y in zip(a.logprobs, b.logprobs))
    except Exception as exc:  # noqa: BLE001 - any failure of the shortcut means: use the plain pass
        _log.info("shared-prompt scoring unavailable for %s (%s): plain passes", type(model).__name__, exc)
        ok = False
    if not ok:
        _log.info("shared-prompt scoring differs from the plain pass for %s: plain passes", type(model).__name__)
    try:
        _SHARING[model] = ok
    except TypeError:
        pass
    return ok


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
    enc = prompt_ids(tokenizer, prompts)
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
