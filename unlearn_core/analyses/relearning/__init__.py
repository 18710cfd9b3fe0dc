"""Relearning probe (methods.md section 5): a few fine-tuning steps on part of the forget set, recovery on the rest.

Knowledge that was only suppressed comes back after a handful of steps on *other* forget facts, because the
steps mostly undo the suppression mechanism; knowledge that was deleted has to be learned again fact by fact, so
the held-out facts stay unknown. The retain-only model (never saw the forget set) under the same steps is the
deletion reference: its held-out "recovery" is what fine-tuning on related facts buys by itself.

Each checkpoint is fine-tuned on a deep copy (AdamW, eval mode so dropout is off and runs repeat exactly), on the
teacher-forced answer NLL of the learn split. The held-out split is scored before every `eval_every`-th step, so
the result holds a recovery curve, and the retain set is scored at the end for the side effect.

Verdict evidence "relearning_recovery": per HELD-OUT forget item, p~ before and after relearning, for every
checkpoint but the original (which already knows them). Its within-model control is the same recipe on the holdout
split (facts no checkpoint ever learned): learn part of the holdout, score the rest, same steps and seed, for every
checkpoint INCLUDING the original, whose holdout gain is what fine-tuning on a few facts teaches about unseen facts
of the same form (the attribute distribution, the answer format) in a model that never forgot anything.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.common.probes import (
    PLAIN,
    SUMMARY_COLUMNS,
    ItemTable,
    check_int,
    encode_items,
    encoded_scores,
    mean,
    probe_items,
    probe_scores,
    put,
    recovery_rate,
    split_scores,
    summary_row,
)
from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope
from unlearn_core.model.forward import answer_logprob_sums
from unlearn_core.model.scoring import pad_id_of
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress

SPLIT_BY = ("item", "concept")


@register_result
@dataclass(frozen=True)
class RelearningConfig:
    """steps: AdamW steps; learn_fraction: share of the forget set fine-tuned on (split by item, or by concept so
    held-out facts are about other entities); batch_size: learn rows per step (cycled); eval_every: curve spacing."""

    steps: int = 10
    learn_fraction: float = 0.5
    lr: float | None = None  # None: lr_for(the original's parameter count), made explicit by the resolve step
    weight_decay: float = 0.0
    batch_size: int = 16
    split_by: str = "item"
    seed: int = 0
    eval_every: int = 1
    score_batch_size: int = 32
    folds: int = 2  # 2: also relearn on the held part and score the learn part, so every item is held out once
    headline: str = "best"  # evidence at the step with the highest mean held-out p~ ("best"), or the last step
    # which facts the attacker is given is the attack's chance: seeds > 1 repeats it on other learn/held splits (split
    # seed = seed + s), every item held out once per seed; the verdict's bootstrap draws one seed per resample
    seeds: int = 3

    def __post_init__(self):
        check_int("steps", self.steps)
        check_int("batch_size", self.batch_size)
        check_int("eval_every", self.eval_every)
        check_int("score_batch_size", self.score_batch_size)
        check_int("seed", self.seed, 0)
        check_int("seeds", self.seeds)
        if self.seeds > 1 and self.folds != 2:
            raise ValueError("seeds > 1 needs folds=2 (every item held out once per seed, so the seeds line up)")
        f = self.learn_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
            raise ValueError(f"learn_fraction must be in (0, 1), got {f!r}")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if name == "lr" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.folds not in (1, 2):
            raise ValueError(f"folds must be 1 or 2, got {self.folds!r}")
        if self.headline not in ("best", "last"):
            raise ValueError(f"headline must be 'best' or 'last', got {self.headline!r}")
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
    """Fine-tune a deep copy; returns (model, curve rows [(step, held p~, held acc, loss)], per-item held p~ before
    and after [n_held] each, per-item held p~ at every evaluated step [n_evals, n_held])."""
    model = copy.deepcopy(lm.model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    pad = pad_id_of(lm.tokenizer)
    enc = encode_items(lm.tokenizer, learn_items, fmt)
    held_enc = encode_items(lm.tokenizer, held_items, fmt)  # scored before every step: tokenised once
    lr = cfg.lr if cfg.lr is not None else lr_for(sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    gen = random.Random(cfg.seed)
    order: list[int] = []
    curve, first, last, steps = [], None, None, []
    loss_value = math.nan
    for step in range(cfg.steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.steps:
            p, a = encoded_scores(model, held_enc, pad, cfg.score_batch_size)
            curve.append((step, mean(p), mean(a), loss_value))
            first, last = (p if first is None else first), p
            steps.append(p)
        if step == cfg.steps:
            break
        batch = []
        while len(batch) < min(cfg.batch_size, len(enc)):
            if not order:
                order = list(range(len(enc)))
                gen.shuffle(order)
            batch.append(enc[order.pop()])
        sums, lens = answer_logprob_sums(model, batch, pad, answers_only=True)  # [B], [B]
        loss = -(sums / lens.clamp_min(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())
    return model.eval(), curve, first, last, torch.stack(steps)


def headline_scores(per_step: torch.Tensor, rule: str) -> torch.Tensor:
    """Per-item p~ at the headline step of one model's run [n]: the step whose MEAN p~ is highest, or the last.
    The same rule for every model (the reference and the holdout control too), so the selection cancels out."""
    return per_step[int(per_step.mean(1).argmax())] if rule == "best" else per_step[-1]


def cross_relearn(lm: LoadedModel, items, learn_idx: list[int], held_idx: list[int], first: torch.Tensor,
                  per_step: torch.Tensor, fmt, cfg: RelearningConfig) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """(item indices covered, per-item p~ before, per-item p~ at the headline step), from the run that learned
    `learn_idx` (its `first` and `per_step` on `held_idx`) and, with cfg.folds == 2, a second run with the parts
    swapped, so every item is held out once: twice the items, the same number of facts given to the attack."""
    runs = [(held_idx, first, per_step)]
    if cfg.folds == 2 and learn_idx:
        tuned, _, first2, _, per_step2 = relearn(lm, [items[i] for i in held_idx], [items[i] for i in learn_idx],
                                                 fmt, cfg)
        del tuned
        runs.append((learn_idx, first2, per_step2))
    covered = sorted(i for idx, _, _ in runs for i in idx)
    pos = {i: k for k, i in enumerate(covered)}
    before = torch.zeros(len(covered))
    curves = torch.zeros(per_step.shape[0], len(covered))
    for idx, f, ps in runs:
        cols = [pos[i] for i in idx]
        before[cols] = f.float()
        curves[:, cols] = ps.float()
    return covered, before, headline_scores(curves, cfg.headline)


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
    holdout_learn_items: tuple[int, ...] = ()  # the holdout control's split (empty: no holdout control ran)
    holdout_held_items: tuple[int, ...] = ()
    holdout_curve: tuple[dict, ...] = ()  # (model, role, step, held_p, held_acc, loss, gain_p) on the holdout
    # per-item p~ on the held parts: split (forget/holdout) -> model -> "plain" | "{steps}steps" -> [n_held]
    items: ItemTable = field(default_factory=dict)

    @property
    def attack(self) -> str:
        return f"{self.config.steps}steps"

    def restrict(self, names) -> RelearningResult:
        """These checkpoints only: each one is fine-tuned from its own weights with the same items and seeds."""
        from unlearn_core.analyses.common.subset import check_keeps, keep_items, keep_keys, keep_rows

        keep = check_keeps(names, next(r["model"] for r in self.summary if r["role"] == "original"))
        return replace(self, summary=keep_rows(self.summary, keep), curve=keep_rows(self.curve, keep),
                       holdout_curve=keep_rows(self.holdout_curve, keep),
                       model_hashes=keep_keys(self.model_hashes, keep), items=keep_items(self.items, keep))

    @property
    def seed_attacks(self) -> list[str]:
        """Item-table attack names of the extra seeds' headline scores (seed 0 is `attack`)."""
        return [f"{self.attack}_seed{s}" for s in range(1, self.config.seeds)]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.summary), columns=list(SUMMARY_COLUMNS))

    def curve_frame(self) -> pd.DataFrame:
        cols = ["model", "role", "step", "held_p", "held_acc", "loss", "recovery_p", "recovery_acc"]
        return pd.DataFrame(list(self.curve), columns=cols)

    def holdout_frame(self) -> pd.DataFrame:
        cols = ["model", "role", "step", "held_p", "held_acc", "loss", "gain_p"]
        return pd.DataFrame(list(self.holdout_curve), columns=cols)

    def scores(self, model_name: str) -> dict[str, float]:
        # named like every probe's raw rate (`relearning_recovery_10steps`), never like the verdict evidence
        # "relearning_recovery", which is the excess over the reference: one name per number
        out = probe_scores(self.summary, model_name, "relearning")
        h = self.items.get("holdout", {}).get(model_name, {})
        if PLAIN in h and self.attack in h:
            out["relearning_holdout_gain_p"] = float(h[self.attack].mean() - h[PLAIN].mean())
        return out

    def evidence_items(self) -> dict:
        c = self.config
        label = (f"up to {c.steps} fine-tuning steps on {c.learn_fraction:g} of the split, scored on the rest"
                 + (" and the parts swapped (every item held out once)" if c.folds == 2 else "")
                 + ("; the step with the best mean p~ per model" if c.headline == "best" else "; last step"))
        label += f"; {c.seeds} splits (seeds) of the facts given" if c.seeds > 1 else ""
        items = probe_items(self.items, EVIDENCE.key, self.attack, label)
        if c.seeds > 1:  # [seeds, items] per model: one seed per bootstrap resample
            stack = {}
            for split, attacked in (("forget", items.forget_attacked), ("holdout", items.holdout_attacked)):
                stack[split] = {m: np.stack([a, *(self.items[split][m][k] for k in self.seed_attacks)])
                                for m, a in attacked.items()
                                if all(k in self.items[split][m] for k in self.seed_attacks)}
            items = replace(items, forget_attacked=stack["forget"], holdout_attacked=stack["holdout"])
        if c.folds == 1:  # only the held part of each split carries a score
            items = replace(items, forget_index=tuple(self.held_items),
                            holdout_index=tuple(self.holdout_held_items) or None)
        return {EVIDENCE.key: items}


EVIDENCE = Evidence("relearning_recovery", "Relearning recovery (held-out facts)", "reference+holdout",
                    axis="recoverable", level="held-out forget answer p after fine-tuning on the other items")


def relearning_needs(data: AuditData, config: RelearningConfig) -> str:
    if len(data.forget) >= 2:
        return ""
    return "relearning needs at least 2 forget items (a learn part and a held-out part)"


def compute_relearning(models: ModelSet, data: AuditData, config: RelearningConfig = RelearningConfig(),
                       progress: Progress | None = None) -> RelearningResult:
    if not isinstance(config, RelearningConfig):
        raise TypeError(f"config must be a RelearningConfig, got {type(config).__name__}")
    why = relearning_needs(data, config)
    if why:
        raise ValueError(why)
    learn_idx, held_idx = split_forget(data.forget, config.learn_fraction, config.split_by, config.seed)
    learn = [data.forget[i] for i in learn_idx]
    held = [data.forget[i] for i in held_idx]
    # the holdout control: the same split rule and seed on the holdout split (needs a learn and a held part)
    h_learn_idx, h_held_idx = (split_forget(data.holdout, config.learn_fraction, config.split_by, config.seed)
                               if len(data.holdout) >= 2 else ([], []))
    h_learn = [data.holdout[i] for i in h_learn_idx]
    h_held = [data.holdout[i] for i in h_held_idx]
    fmt = data.prompt_format
    targets = list(models.unlearned.values()) + ([models.retain_only] if models.retain_only else [])
    per_model = (3 if h_held else 2) + (config.seeds - 1) * (2 if h_held else 1)
    total = 1 + per_model * len(targets) + (1 if h_held else 0)
    attack = f"{config.steps}steps"
    items: ItemTable = {}
    holdout_curve: list[dict] = []
    done = 0

    def tell(msg: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done / total, msg)
        done += 1

    def scored(lm, model):
        fp, fa = split_scores(model, lm.tokenizer, held, fmt, config.score_batch_size)
        rp, ra = split_scores(model, lm.tokenizer, data.retain, fmt, config.score_batch_size)
        put(items, "forget", lm.name, PLAIN, fp)
        return (mean(fp), mean(fa)), (mean(rp), mean(ra))

    def holdout_control(lm: LoadedModel) -> None:
        """The same recipe on the holdout split: its held part's p~ before and after, and its curve."""
        if not h_held:
            return
        tell(f"{lm.name}: {config.steps} relearning steps on the holdout split (control)")
        tuned, pts, first, _, per_step = relearn(lm, h_learn, h_held, fmt, config)
        del tuned
        _, before, after = cross_relearn(lm, data.holdout, h_learn_idx, h_held_idx, first, per_step, fmt, config)
        put(items, "holdout", lm.name, PLAIN, before)
        put(items, "holdout", lm.name, attack, after)
        holdout_curve.extend({"model": lm.name, "role": lm.role, "step": step, "held_p": hp, "held_acc": ha,
                              "loss": loss, "gain_p": hp - pts[0][1]} for step, hp, ha, loss in pts)
        if lm.role != "original":  # the verdict reads the checkpoints' holdout control, not the original's
            more_seeds(lm, data.holdout, "holdout")

    def more_seeds(lm: LoadedModel, split_items, split: str) -> None:
        """The extra seeds: other learn/held splits of the same items, every item held out once per seed."""
        for s in range(1, config.seeds):
            tell(f"{lm.name}: relearning on {split} split {s + 1} of {config.seeds}")
            li, hi = split_forget(split_items, config.learn_fraction, config.split_by, config.seed + s)
            tuned, _, first_s, _, per_step_s = relearn(lm, [split_items[i] for i in li], [split_items[i] for i in hi],
                                                       fmt, config)
            del tuned
            covered, _, after_s = cross_relearn(lm, split_items, li, hi, first_s, per_step_s, fmt, config)
            assert covered == list(range(len(split_items)))  # folds=2: every item once
            put(items, split, lm.name, f"{attack}_seed{s}", after_s)

    tell("original: held-out scores")
    o = models.original
    orig_plain = summary_row(o.name, o.role, PLAIN, *scored(o, o.model), None, None)
    if config.folds == 2:  # the evidence covers every forget item: the original's p~ on all of them
        put(items, "forget", o.name, PLAIN, split_scores(o.model, o.tokenizer, data.forget, fmt,
                                                         config.score_batch_size)[0])
    holdout_control(o)
    rows, curve = [orig_plain], []
    for lm in targets:
        tell(f"{lm.name}: plain scores")
        plain = summary_row(lm.name, lm.role, PLAIN, *scored(lm, lm.model), None, None)
        tell(f"{lm.name}: {config.steps} relearning steps")
        tuned, pts, first, _, per_step = relearn(lm, learn, held, fmt, config)
        rp, ra = split_scores(tuned, lm.tokenizer, data.retain, fmt, config.score_batch_size)
        del tuned
        _, before, after = cross_relearn(lm, data.forget, learn_idx, held_idx, first, per_step, fmt, config)
        put(items, "forget", lm.name, PLAIN, before)
        put(items, "forget", lm.name, attack, after)
        fp_end, fa_end = pts[-1][1], pts[-1][2]
        rows += [plain, summary_row(lm.name, lm.role, attack, (fp_end, fa_end), (mean(rp), mean(ra)), plain,
                                    orig_plain)]
        for step, hp, ha, loss in pts:
            curve.append({"model": lm.name, "role": lm.role, "step": step, "held_p": hp, "held_acc": ha,
                          "loss": loss,
                          "recovery_p": recovery_rate(hp, plain["forget_p"], orig_plain["forget_p"]),
                          "recovery_acc": recovery_rate(ha, plain["forget_acc"], orig_plain["forget_acc"])})
        more_seeds(lm, data.forget, "forget")
        holdout_control(lm)
    if progress is not None:
        progress(1.0, "relearning done")
    return RelearningResult(tuple(rows), tuple(curve), tuple(learn_idx), tuple(held_idx),
                            {n: m.hash for n, m in models.all().items()}, data.hash, config,
                            tuple(h_learn_idx), tuple(h_held_idx), tuple(holdout_curve), items)


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.relearning.plots import plot_relearning

    return {"relearning": plot_relearning(r)}


BASE_LR = 1e-3  # the attack's rate on the demo labs' models (<= 1M parameters), where 10 steps relearn a fact
BASE_PARAMS = 1_000_000
MIN_LR = 1e-5


def lr_for(n_params: int) -> float:
    """The relearning rate for a model of n_params: BASE_LR up to 1M parameters, then 1/sqrt(size) (Adam's usable
    fine-tuning rate falls with width), clipped at 1e-5; two significant digits, so the same model counted two ways
    (loaded, or from its safetensors header) gets one rate and one store key. Checked against published recipes,
    not against any audit: 135M -> 8.6e-5 (SmolLM2 learns facts at 1e-4), 1.2B -> 2.9e-5, 7B -> 1.2e-5 (TOFU
    fine-tunes Llama-2-7B at 1e-5)."""
    if n_params <= 0:
        return BASE_LR
    lr = BASE_LR * min(1.0, math.sqrt(BASE_PARAMS / n_params))
    return float(f"{max(MIN_LR, lr):.2g}")


def _resolve(cfg: RelearningConfig, shape) -> RelearningConfig:
    return cfg if cfg.lr is not None else replace(cfg, lr=lr_for(shape.n_params))


SPEC = AnalysisSpec(
    "relearning", "Relearning probe", RelearningConfig, compute_relearning,
    lambda r: {"relearning_summary": r.to_frame(), "relearning_curve": r.curve_frame(),
               "relearning_holdout_control": r.holdout_frame()},
    lambda r, name: r.scores(name),
    evidence=(EVIDENCE,),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Relearning",
    icon=":material/replay:",
    plots=_plots,
    cost_rank=11,
    scope=Scope("how fast fine-tuning on some forget facts restores the held-out ones, over the whole "
                "run (peak and area, beside the retain-only reference's curve)",
                "deletion from a last-step number alone: fine-tuning teaches the attribute "
                "distribution to any model"),
    default_evidence=True,
    resolve=_resolve,
    restrict=lambda r, names: r.restrict(names),
    needs=relearning_needs,
)
