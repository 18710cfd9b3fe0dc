"""Relearning probe (methods.md section 5): a few fine-tuning steps on part of the forget set, recovery on the rest.

Knowledge that was only suppressed comes back after a handful of steps on *other* forget facts, because the
steps mostly undo the suppression mechanism; knowledge that was deleted has to be learned again fact by fact, so
the held-out facts stay unknown. The retain-only model (never saw the forget set) under the same steps is the
deletion reference: its held-out "recovery" is what fine-tuning on related facts buys by itself.

Each checkpoint is fine-tuned on a deep copy (AdamW, eval mode so dropout is off and runs repeat exactly), on the
teacher-forced answer NLL of the learn split. The held-out split is scored before every `eval_every`-th step, so
the result holds a recovery curve, and the retain set is scored at the end for the side effect.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from unlearn_core.analyses.quantization import (
    SUMMARY_COLUMNS,
    check_int,
    mean,
    probe_scores,
    recovery_rate,
    split_scores,
    summary_row,
)
from unlearn_core.codec import register_result
from unlearn_core.lab.unlearn import answer_logprob_sums
from unlearn_core.scoring import encode, pad_id_of
from unlearn_core.types import AuditData, LoadedModel, ModelSet

Progress = Callable[[float, str], None]
SPLIT_BY = ("item", "concept")


@register_result
@dataclass(frozen=True)
class RelearningConfig:
    """steps: AdamW steps; learn_fraction: share of the forget set fine-tuned on (split by item, or by concept so
    held-out facts are about other entities); batch_size: learn rows per step (cycled); eval_every: curve spacing."""

    steps: int = 10
    learn_fraction: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16
    split_by: str = "item"
    seed: int = 0
    eval_every: int = 1
    score_batch_size: int = 32

    def __post_init__(self):
        check_int("steps", self.steps)
        check_int("batch_size", self.batch_size)
        check_int("eval_every", self.eval_every)
        check_int("score_batch_size", self.score_batch_size)
        check_int("seed", self.seed, 0)
        f = self.learn_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
            raise ValueError(f"learn_fraction must be in (0, 1), got {f!r}")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.split_by not in SPLIT_BY:
            raise ValueError(f"split_by must be one of {SPLIT_BY}, got {self.split_by!r}")


def split_forget(items, fraction: float, split_by: str, seed: int) -> tuple[list[int], list[int]]:
    """(learn indices, held-out indices); deterministic in seed. Both sides are non-empty when len(items) >= 2."""
    rng = random.Random(seed)
    if split_by == "concept":
        concepts = sorted({it.concept or f"#{i}" for i, it in enumerate(items)})
        rng.shuffle(concepts)
        k = min(len(concepts) - 1, max(1, round(fraction * len(concepts))))
        learn_c = set(concepts[:k])
        learn = [i for i, it in enumerate(items) if (it.concept or f"#{i}") in learn_c]
    else:
        idx = list(range(len(items)))
        rng.shuffle(idx)
        k = min(len(items) - 1, max(1, round(fraction * len(items))))
        learn = sorted(idx[:k])
    held = [i for i in range(len(items)) if i not in set(learn)]
    return learn, held


def relearn(lm: LoadedModel, learn_items, held_items, fmt, cfg: RelearningConfig):
    """Fine-tune a deep copy; returns (model, curve rows [(step, held p~, held acc, loss)])."""
    model = copy.deepcopy(lm.model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    pad = pad_id_of(lm.tokenizer)
    pairs = [fmt.pair(it) for it in learn_items]
    enc = encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = random.Random(cfg.seed)
    order: list[int] = []
    curve = []
    loss_value = math.nan
    for step in range(cfg.steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.steps:
            p, a = split_scores(model, lm.tokenizer, held_items, fmt, cfg.score_batch_size)
            curve.append((step, mean(p), mean(a), loss_value))
        if step == cfg.steps:
            break
        batch = []
        while len(batch) < min(cfg.batch_size, len(enc)):
            if not order:
                order = list(range(len(enc)))
                gen.shuffle(order)
            batch.append(enc[order.pop()])
        sums, lens = answer_logprob_sums(model, batch, pad)  # [B], [B]
        loss = -(sums / lens.clamp_min(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())
    return model.eval(), curve


@register_result
@dataclass(frozen=True)
class RelearningResult:
    summary: tuple[dict, ...]  # SUMMARY_COLUMNS rows; forget_* columns are on the HELD-OUT forget items
    curve: tuple[dict, ...]  # (model, step, held_p, held_acc, loss, recovery_p, recovery_acc)
    learn_items: tuple[int, ...]
    held_items: tuple[int, ...]
    model_hashes: dict[str, str]
    data_hash: str
    config: RelearningConfig

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.summary), columns=list(SUMMARY_COLUMNS))

    def curve_frame(self) -> pd.DataFrame:
        cols = ["model", "role", "step", "held_p", "held_acc", "loss", "recovery_p", "recovery_acc"]
        return pd.DataFrame(list(self.curve), columns=cols)

    def scores(self, model_name: str) -> dict[str, float]:
        out = probe_scores(self.summary, model_name, "relearning")
        # one name per probe: "relearning_recovery" (p~), "relearning_recovery_acc"
        return {k.replace(f"_{self.config.steps}steps", ""): v for k, v in out.items()}


def compute_relearning(models: ModelSet, data: AuditData, config: RelearningConfig = RelearningConfig(),
                       progress: Progress | None = None) -> RelearningResult:
    if not isinstance(config, RelearningConfig):
        raise TypeError(f"config must be a RelearningConfig, got {type(config).__name__}")
    if len(data.forget) < 2:
        raise ValueError("relearning needs at least 2 forget items (a learn part and a held-out part)")
    learn_idx, held_idx = split_forget(data.forget, config.learn_fraction, config.split_by, config.seed)
    learn = [data.forget[i] for i in learn_idx]
    held = [data.forget[i] for i in held_idx]
    fmt = data.prompt_format
    targets = list(models.unlearned.values()) + ([models.retain_only] if models.retain_only else [])
    total = 1 + 2 * len(targets)
    attack = f"{config.steps}steps"

    def tell(i: int, msg: str) -> None:
        if progress is not None:
            progress(i / total, msg)

    def scored(lm, model):
        fp, fa = split_scores(model, lm.tokenizer, held, fmt, config.score_batch_size)
        rp, ra = split_scores(model, lm.tokenizer, data.retain, fmt, config.score_batch_size)
        return (mean(fp), mean(fa)), (mean(rp), mean(ra))

    tell(0, "original: held-out scores")
    o = models.original
    orig_plain = summary_row(o.name, o.role, "plain", *scored(o, o.model), None, None)
    rows, curve = [orig_plain], []
    for k, lm in enumerate(targets):
        tell(1 + 2 * k, f"{lm.name}: plain scores")
        plain = summary_row(lm.name, lm.role, "plain", *scored(lm, lm.model), None, None)
        tell(2 + 2 * k, f"{lm.name}: {config.steps} relearning steps")
        tuned, pts = relearn(lm, learn, held, fmt, config)
        rp, ra = split_scores(tuned, lm.tokenizer, data.retain, fmt, config.score_batch_size)
        del tuned
        fp_end, fa_end = pts[-1][1], pts[-1][2]
        rows += [plain, summary_row(lm.name, lm.role, attack, (fp_end, fa_end), (mean(rp), mean(ra)), plain,
                                    orig_plain)]
        for step, hp, ha, loss in pts:
            curve.append({"model": lm.name, "role": lm.role, "step": step, "held_p": hp, "held_acc": ha,
                          "loss": loss,
                          "recovery_p": recovery_rate(hp, plain["forget_p"], orig_plain["forget_p"]),
                          "recovery_acc": recovery_rate(ha, plain["forget_acc"], orig_plain["forget_acc"])})
    if progress is not None:
        progress(1.0, "relearning done")
    return RelearningResult(tuple(rows), tuple(curve), tuple(learn_idx), tuple(held_idx),
                            {n: m.hash for n, m in models.all().items()}, data.hash, config)


def analysis_spec():
    from unlearn_core.audit import Analysis

    return Analysis("relearning", "Relearning probe", RelearningConfig, compute_relearning,
                    lambda r: {"relearning_summary": r.to_frame(), "relearning_curve": r.curve_frame()},
                    lambda r, name: r.scores(name))
