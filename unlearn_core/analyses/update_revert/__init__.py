"""Low-rank update revert: is the unlearning a small edit on top of weights that still hold the answers?

Many unlearning methods (gradient ascent and its variants run for a few steps, LoRA unlearning, RMU's steering of a
few directions) leave the original's weights in place and add an update concentrated in a few directions per
matrix. If the forget answers come back when only those directions of the update are undone, the knowledge was
never removed from the weights: the update hides it. Per checkpoint and per 2-D weight (every Linear / Conv1D /
Embedding, tied weights once) we factor the update D = W - W_original by SVD and re-score the forget set with the
top-k singular directions of D removed, W' = W - U_k S_k V_k^T, for each k of a sweep.

Control: the probe uses the ORIGINAL's weights, and a model fine-tuned from the same base without the forget set
also moves back towards the original when part of its difference is undone (measured on the demo lab: 13-41% of the
forget answer mass returns at k = 8). So only the retain-only reference under the same revert is a control; the
holdout split is not (the original never knew those facts, so reverting towards it restores nothing there).
Vectors (biases, norms) are left as they are: they have no low-rank structure, and undoing them is copying them.

Weights-only companion: per matrix, the share of the update's squared Frobenius norm in its top-k directions, for
the checkpoint and the reference: a suppression edit is concentrated, a deletion's difference from the original is
spread.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import pandas as pd
import torch
from torch import nn

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
    summary_row,
)
from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope
from unlearn_core.model import arch
from unlearn_core.model.scoring import pad_id_of
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, ModelSet, Progress

EVIDENCE = Evidence("revert_recovery", "Low-rank update revert recovery", "reference", axis="edit_of_original",
                    level="forget answer p with the update's top singular directions undone")
SPECTRUM_COLUMNS = ("model", "module", "layer", "rows", "cols", "update_norm", "relative_update", "energy_top_k")


def weight_matrices(model) -> dict[str, torch.Tensor]:
    """Every 2-D weight of a Linear / Conv1D / Embedding as a [out, in] view, by module name; a tied weight (GPT-2's
    head is the token embedding) appears once, under the first name."""
    out, seen = {}, set()
    for name, mod in model.named_modules():
        kind = type(mod).__name__
        if not (isinstance(mod, (nn.Linear, nn.Embedding)) or kind == "Conv1D"):
            continue
        w = mod.weight
        if w.ndim != 2 or w.data_ptr() in seen:
            continue
        seen.add(w.data_ptr())
        out[name] = w.T if kind == "Conv1D" else w
    return out


def top_directions(d: torch.Tensor, k: int, exact_up_to: int, seed: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
    """U [m, k], S [k], Vh [k, n] of the k largest singular directions of d (float32). Exact SVD for matrices whose
    smaller side is at most `exact_up_to`; above, a seeded randomized SVD (Halko et al.; torch.svd_lowrank with 4
    power iterations), so a 4096 x 14336 update costs a few products, not a full decomposition (GPT-2's 768 x 3072:
    0.46 s exact, 0.03 s randomized on 2 cores; the whole update of a 124M model 18 s vs 1.6 s)."""
    k = min(k, *d.shape)
    if min(d.shape) <= exact_up_to:
        u, s, vh = torch.linalg.svd(d, full_matrices=False)
        return u[:, :k], s[:k], vh[:k]
    with torch.random.fork_rng(devices=[d.device] if d.device.type == "cuda" else []):
        torch.manual_seed(seed)
        u, s, v = torch.svd_lowrank(d, q=min(k + 8, *d.shape), niter=4)
    return u[:, :k], s[:k], v[:, :k].T


@register_result
@dataclass(frozen=True)
class RevertConfig:
    """ranks: numbers of top singular directions of each matrix's update to undo (the sweep); headline_rank: the
    one the verdict reads (8: the rank of a typical LoRA edit) and the only one whose retain side effect is scored
    (the retain set is the larger split: the sweep's other ranks score the forget set only); exact_svd_up_to:
    matrices whose smaller side is at most this get an exact SVD, larger ones a seeded randomized SVD."""

    ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    headline_rank: int = 8
    exact_svd_up_to: int = 256
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self):
        if not isinstance(self.ranks, tuple) or not self.ranks:
            raise ValueError(f"ranks must be a non-empty tuple, got {self.ranks!r}")
        for k in self.ranks:
            check_int("ranks", k)
        if self.headline_rank not in self.ranks:
            raise ValueError(f"headline_rank {self.headline_rank!r} must be one of ranks {self.ranks}")
        check_int("exact_svd_up_to", self.exact_svd_up_to)
        check_int("seed", self.seed, 0)
        check_int("batch_size", self.batch_size)


@register_result
@dataclass(frozen=True)
class RevertResult:
    summary: tuple[dict, ...]  # SUMMARY_COLUMNS rows, one per (checkpoint, attack); attack "rank{k}" or "plain"
    spectrum: tuple[dict, ...]  # SPECTRUM_COLUMNS rows, one per (checkpoint, matrix) at the headline rank
    notes: tuple[str, ...]
    model_hashes: dict[str, str]
    data_hash: str
    config: RevertConfig
    items: ItemTable = field(default_factory=dict)  # split "forget" -> model -> attack -> per-item p~

    @property
    def headline(self) -> str:
        return f"rank{self.config.headline_rank}"

    def restrict(self, names) -> RevertResult:
        """These checkpoints only: each one's update is factored and undone on its own copy."""
        from unlearn_core.analyses.common.subset import check_keeps, keep_items, keep_keys, keep_rows, reference_of

        keep = check_keeps(names, next(r["model"] for r in self.summary if r["role"] == "original"))
        dropped = [r["model"] for r in self.summary if r["model"] not in keep]
        notes = [n for n in self.notes if not any(n.startswith(f"{d}: ") for d in dropped)]
        ref = reference_of(self.summary)
        if ref is not None and ref not in keep:
            notes.append(NO_REFERENCE_NOTE)
        return replace(self, summary=keep_rows(self.summary, keep), spectrum=keep_rows(self.spectrum, keep),
                       notes=tuple(notes), model_hashes=keep_keys(self.model_hashes, keep),
                       items=keep_items(self.items, keep))

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(list(self.summary), columns=list(SUMMARY_COLUMNS))
        df.insert(3, "rank", df.attack.map(lambda a: 0 if a == PLAIN else int(a.removeprefix("rank"))))
        return df

    def spectrum_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.spectrum), columns=list(SPECTRUM_COLUMNS))

    def scores(self, model_name: str) -> dict[str, float]:
        out = probe_scores(self.summary, model_name, "revert")
        rows = [r for r in self.spectrum if r["model"] == model_name]
        total = sum(r["update_norm"] ** 2 for r in rows)
        if total > 0:
            out[f"update_energy_top{self.config.headline_rank}"] = \
                sum(r["energy_top_k"] * r["update_norm"] ** 2 for r in rows) / total
        return out

    def evidence_items(self) -> dict:
        k = self.config.headline_rank
        return {EVIDENCE.key: probe_items(self.items, EVIDENCE.key, self.headline,
                                          f"top-{k} update directions per matrix undone")}


def _block_of(model) -> dict[str, int]:
    blocks = {id(b): i for i, b in enumerate(arch.decoder_layers(model))}
    return {name: blocks[id(mod)] for name, mod in model.named_modules() if id(mod) in blocks}


NO_REFERENCE_NOTE = ("no retain-only reference: the revert moves every model towards the original, a retrained one "
                     "too; without the reference's revert as the control the number does not count")


@torch.no_grad()
def compute_update_revert(models: ModelSet, data: AuditData, config: RevertConfig = RevertConfig(),
                          progress: Progress | None = None) -> RevertResult:
    if not isinstance(config, RevertConfig):
        raise TypeError(f"config must be a RevertConfig, got {type(config).__name__}")
    original = models.original
    targets = list(models.unlearned.values()) + ([models.retain_only] if models.retain_only else [])
    ranks = sorted(set(config.ranks))
    total, done = len(targets) * (len(ranks) + 2) + 1, 0
    notes: list[str] = []
    items: ItemTable = {}
    pad = pad_id_of(original.tokenizer)
    forget = encode_items(original.tokenizer, data.forget, data.prompt_format)
    retain = encode_items(original.tokenizer, data.retain, data.prompt_format) if data.retain else []

    def step(msg: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done / total, msg)
        done += 1

    def scored(name: str, model, attack: str, with_retain: bool = True) -> tuple[tuple[float, float],
                                                                                 tuple[float, float]]:
        """Forget means (per-item p~ into the item table) and, where asked, retain means (else NaN)."""
        fp, fa = encoded_scores(model, forget, pad, config.batch_size)
        put(items, "forget", name, attack, fp)
        if not with_retain:
            return (mean(fp), mean(fa)), (math.nan, math.nan)
        rp, ra = encoded_scores(model, retain, pad, config.batch_size)
        return (mean(fp), mean(fa)), (mean(rp), mean(ra))

    step("original: plain scores")
    f0, r0 = scored(original.name, original.model, PLAIN)
    orig_plain = summary_row(original.name, "original", PLAIN, f0, r0, None, None)
    rows, spectrum = [orig_plain], []
    w_orig = weight_matrices(original.model)
    block_of = _block_of(original.model)
    # per matrix of the original, once: its decoder block (-1 outside the blocks) and its norm
    orig_meta = {name: (next((i for prefix, i in block_of.items() if name.startswith(prefix + ".")), -1),
                        max(float(torch.linalg.matrix_norm(wo.float())), 1e-12)) for name, wo in w_orig.items()}
    for lm in targets:
        step(f"{lm.name}: plain scores")
        f, r = scored(lm.name, lm.model, PLAIN)
        plain = summary_row(lm.name, lm.role, PLAIN, f, r, None, None)
        rows.append(plain)
        step(f"{lm.name}: factoring the update")
        work = copy.deepcopy(lm.model).eval()
        factors = []  # (weight view, U S [m, K], Vh [K, n]) per matrix
        skipped = []
        for name, w in weight_matrices(work).items():
            wo = w_orig.get(name)
            if wo is None or wo.shape != w.shape:
                skipped.append(name)
                continue
            d = w.float() - wo.float().to(w.device)
            norm = float(torch.linalg.matrix_norm(d))
            if norm == 0.0:
                continue
            u, s, vh = top_directions(d, max(ranks), config.exact_svd_up_to, config.seed)
            factors.append((w, u * s, vh))
            kh = min(config.headline_rank, len(s))
            layer, orig_norm = orig_meta[name]
            spectrum.append({"model": lm.name, "module": name, "layer": layer, "rows": w.shape[0],
                             "cols": w.shape[1], "update_norm": norm, "relative_update": norm / orig_norm,
                             "energy_top_k": float((s[:kh] ** 2).sum()) / norm ** 2})
        if skipped:
            notes.append(f"{lm.name}: {len(skipped)} weight(s) not in the original or of another shape, left as "
                         f"they are (e.g. {skipped[0]})")
        prev = 0
        for k in ranks:  # undo the directions (prev, k] on top of those already undone: one copy per checkpoint
            step(f"{lm.name}: top-{k} update directions undone")
            for w, us, vh in factors:
                hi = min(k, vh.shape[0])
                if hi > prev:
                    w.sub_((us[:, prev:hi] @ vh[prev:hi]).to(w.dtype))
            prev = k
            f, r = scored(lm.name, work, f"rank{k}", with_retain=k == config.headline_rank)
            rows.append(summary_row(lm.name, lm.role, f"rank{k}", f, r, plain, orig_plain))
        del work, factors
    if models.retain_only is None:
        notes.append(NO_REFERENCE_NOTE)
    if progress is not None:
        progress(1.0, "update revert done")
    return RevertResult(tuple(rows), tuple(spectrum), tuple(notes),
                        {n: m.hash for n, m in models.all().items()}, data.hash, config, items)


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.update_revert.plots import plot_update_revert, plot_update_spectrum

    return {"update_revert": plot_update_revert(r), "update_revert_spectrum": plot_update_spectrum(r)}


SPEC = AnalysisSpec(
    "update_revert", "Low-rank update revert", RevertConfig, compute_update_revert,
    lambda r: {"revert_summary": r.to_frame(), "revert_spectrum": r.spectrum_frame()},
    lambda r, name: r.scores(name),
    evidence=(EVIDENCE,),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Update revert",
    icon=":material/undo:",
    plots=_plots,
    cost_rank=5,
    scope=Scope("whether the forget answers sit in weights the unlearning left in place, hidden by an "
                "edit of a few directions per matrix (undo the update's top singular directions)",
                "whether someone without the original's weights could undo it; a model that moved "
                "less than a retrained one is not deleted by that alone: read the gap to the "
                "reference", "weights (the update is measured from them)"),
    default_evidence=True,
    restrict=lambda r, names: r.restrict(names),
)
