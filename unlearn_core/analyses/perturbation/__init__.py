"""Activation perturbation probe (methods.md section 5, after "Does Machine Unlearning Truly Remove Knowledge?").

A suppressed answer sits just behind a thin decision boundary: random noise in the residual stream pushes some
samples back across it, so at least one of K noisy forward passes answers correctly. A deleted answer is not
there to fall back to, so noise only finds it by chance, at the rate the retain-only model (deletion reference)
shows under the same noise.

Noise: h <- h + sigma * ||h|| * u at the output of the chosen blocks, every token position, u a uniformly random
unit direction drawn per token and per sample (so sigma is relative to the activation norm). Each forget question
is repeated K times inside the length-sorted batches (one scoring call per sigma, never one pass per sample).
recovery@K uses F = share of questions where ANY of the K samples answers correctly (teacher-forced argmax
reproduces every answer token) and F = mean over questions of the BEST sample's p~. Retain side effect: the retain
set under one noisy sample per question.

Verdict evidence "perturbation_recovery" at the headline sigma: per item, the plain p~ and the BEST of the K noisy
samples' p~ (the same best-of-K rule for every model, reference included), on the forget split and on the holdout
split (facts the original never learned: how often noise alone "finds" an answer that was never there). The noise
draws are seeded identically for every model, so checkpoint and reference see the same noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from unlearn_core.analyses.common.probes import (
    PLAIN,
    SUMMARY_COLUMNS,
    ItemTable,
    check_int,
    mean,
    probe_items,
    probe_scores,
    put,
    summary_row,
)
from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope, Shape
from unlearn_core.model import arch
from unlearn_core.model.hooks import edited_blocks
from unlearn_core.model.scoring import encode, input_device, pad_id_of, score_encoded
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress

HEADLINE_SIGMA = 0.3


def activation_noise(model, layers: tuple[int, ...], sigma: float, seed: int):
    """Within the block, add sigma * ||h|| * u to the outputs of `layers` (hooks; the model itself is untouched)."""
    gen = torch.Generator(device=input_device(model)).manual_seed(seed)

    def noisy(h: torch.Tensor) -> torch.Tensor:  # h [B, T, d]
        u = torch.randn(h.shape, generator=gen, device=h.device, dtype=torch.float32)
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        hf = h.float()
        return (hf + sigma * hf.norm(dim=-1, keepdim=True) * u).to(h.dtype)

    return edited_blocks(model, layers, noisy)


@register_result
@dataclass(frozen=True)
class PerturbationConfig:
    """layers: blocks to perturb (None = the middle block); sigmas: noise scales relative to ||h||; k: samples per
    forget (and holdout) question; headline_sigma: the sigma the verdict evidence reads (one of sigmas; None = 0.3
    if tried, else the tried sigma nearest to 0.3, the smaller on a tie)."""

    layers: tuple[int, ...] | None = None
    sigmas: tuple[float, ...] = (0.1, 0.3, 1.0)
    k: int = 8
    seed: int = 0
    batch_size: int = 64
    headline_sigma: float | None = None

    def __post_init__(self):
        if self.layers is not None:
            if not isinstance(self.layers, tuple) or not self.layers:
                raise ValueError(f"layers must be None or a non-empty tuple, got {self.layers!r}")
            for li in self.layers:
                check_int("layer", li, 0)
        if not isinstance(self.sigmas, tuple) or not self.sigmas:
            raise ValueError(f"sigmas must be a non-empty tuple, got {self.sigmas!r}")
        for s in self.sigmas:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s >= 0):
                raise ValueError(f"sigmas must be finite numbers >= 0, got {s!r}")
        check_int("k", self.k)
        check_int("seed", self.seed, 0)
        check_int("batch_size", self.batch_size)
        if self.headline_sigma is not None and self.headline_sigma not in self.sigmas:
            raise ValueError(f"headline_sigma must be one of sigmas {self.sigmas}, got {self.headline_sigma!r}")

    @property
    def headline(self) -> float:
        if self.headline_sigma is not None:
            return self.headline_sigma
        return min(self.sigmas, key=lambda s: (abs(s - HEADLINE_SIGMA), s))


def _layers(cfg: PerturbationConfig, model) -> tuple[int, ...]:
    n = arch.n_layers(model)
    layers = cfg.layers if cfg.layers is not None else (n // 2,)
    bad = [li for li in layers if li >= n]
    if bad:
        raise ValueError(f"layers {bad} out of range for a model with {n} blocks")
    return layers


def noisy_scores(lm: LoadedModel, enc, k: int, layers, sigma: float, seed: int, batch_size: int):
    """p~ [n, k] and accuracy [n, k] of every item under k independent noise samples."""
    reps = [e for e in enc for _ in range(k)]  # item-major: row i*k + j = sample j of item i
    with activation_noise(lm.model, layers, sigma, seed):
        sc = score_encoded(lm.model, reps, pad_id_of(lm.tokenizer), batch_size=batch_size)
    return sc.prob().reshape(len(enc), k), sc.accuracy().reshape(len(enc), k)


@register_result
@dataclass(frozen=True)
class PerturbationResult:
    summary: tuple[dict, ...]  # SUMMARY_COLUMNS; forget_* under attack = best-of-K p~ / any-of-K accuracy
    samples: tuple[dict, ...]  # (model, sigma, mean sample acc, mean sample p~): the average single sample
    layers: tuple[int, ...]
    model_hashes: dict[str, str]
    data_hash: str
    config: PerturbationConfig
    # per-item p~: split (forget/holdout) -> model -> "plain" [n] | "sigma{s}" [n, k] (every noise sample)
    items: ItemTable = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.summary), columns=list(SUMMARY_COLUMNS))

    def samples_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.samples), columns=["model", "role", "sigma", "sample_acc", "sample_p"])

    def scores(self, model_name: str) -> dict[str, float]:
        return probe_scores(self.summary, model_name, "perturbation")

    def evidence_items(self) -> dict:
        sigma, k = self.config.headline, self.config.k
        return {EVIDENCE.key: probe_items(self.items, EVIDENCE.key, attack_name(sigma),
                                          f"activation noise sigma={sigma:g}, best of {k} samples",
                                          reduce=best_of_k)}


EVIDENCE = Evidence("perturbation_recovery", "Activation-noise recovery (best of K)", "reference+holdout",
                    axis="recoverable", counted=False, level="best forget answer p of K noisy samples",
                    why_not="recovers no more from the planted suppressions than from the deletion controls on "
                    "the demo lab (probe-validity table): its number is shown, not counted")


def attack_name(sigma: float) -> str:
    return f"sigma{sigma:g}"


def best_of_k(samples: np.ndarray) -> np.ndarray:
    """Per item the best noisy sample's p~: the attacker keeps whichever of the K tries answers best."""
    return samples.max(axis=1)


def _encoded(lm: LoadedModel, items, fmt) -> list:
    pairs = [fmt.pair(it) for it in items]
    return encode(lm.tokenizer, [p for p, _ in pairs], [a for _, a in pairs]) if pairs else []


def resolve_perturbation(config: PerturbationConfig, shape: Shape) -> PerturbationConfig:
    """layers None -> (the middle block,); headline_sigma None -> the sigma it picks."""
    layers = config.layers if config.layers is not None else (shape.n_layers // 2,)
    return replace(config, layers=layers, headline_sigma=config.headline)


def compute_perturbation(models: ModelSet, data: AuditData, config: PerturbationConfig = PerturbationConfig(),
                         progress: Progress | None = None) -> PerturbationResult:
    if not isinstance(config, PerturbationConfig):
        raise TypeError(f"config must be a PerturbationConfig, got {type(config).__name__}")
    layers = _layers(config, models.original.model)
    fmt = data.prompt_format
    checkpoints = list(models.all().values())  # original first
    total = len(checkpoints) * (1 + len(config.sigmas))
    rows, samples, orig_plain = [], [], None
    items: ItemTable = {}
    for mi, lm in enumerate(checkpoints):
        def tell(j: int, msg: str, mi=mi, name=lm.name) -> None:
            if progress is not None:
                progress((mi * (1 + len(config.sigmas)) + j) / total, f"{name}: {msg}")

        enc_f, enc_r, enc_h = (_encoded(lm, data.forget, fmt), _encoded(lm, data.retain, fmt),
                               _encoded(lm, data.holdout, fmt))
        tell(0, "plain scores")
        pad = pad_id_of(lm.tokenizer)
        f = score_encoded(lm.model, enc_f, pad, batch_size=config.batch_size)
        r = score_encoded(lm.model, enc_r, pad, batch_size=config.batch_size) if enc_r else None
        put(items, "forget", lm.name, PLAIN, f.prob())
        if enc_h:
            put(items, "holdout", lm.name, PLAIN, score_encoded(lm.model, enc_h, pad, config.batch_size).prob())
        retain_plain = (mean(r.prob()), mean(r.accuracy())) if r else (math.nan, math.nan)
        plain = summary_row(lm.name, lm.role, PLAIN, (mean(f.prob()), mean(f.accuracy())), retain_plain, None,
                            None)
        orig_plain = plain if lm.role == "original" else orig_plain
        rows.append(plain)
        for si, sigma in enumerate(config.sigmas):
            tell(1 + si, f"sigma={sigma:g}, {config.k} samples")
            seed = config.seed * 1000 + si  # the same for every model: checkpoint and reference share the noise
            p, a = noisy_scores(lm, enc_f, config.k, layers, sigma, seed, config.batch_size)  # [n, k]
            put(items, "forget", lm.name, attack_name(sigma), p)
            if enc_h:
                hp, _ = noisy_scores(lm, enc_h, config.k, layers, sigma, seed + 250, config.batch_size)
                put(items, "holdout", lm.name, attack_name(sigma), hp)
            if enc_r:
                rp, ra = noisy_scores(lm, enc_r, 1, layers, sigma, seed + 500, config.batch_size)
                retain = (mean(rp), mean(ra))
            else:
                retain = (math.nan, math.nan)
            best = (mean(p.max(1).values), mean(a.max(1).values))
            rows.append(summary_row(lm.name, lm.role, attack_name(sigma), best, retain, plain, orig_plain))
            samples.append({"model": lm.name, "role": lm.role, "sigma": float(sigma), "sample_acc": mean(a),
                            "sample_p": mean(p)})
    if progress is not None:
        progress(1.0, "perturbation done")
    return PerturbationResult(tuple(rows), tuple(samples), tuple(layers),
                              {n: m.hash for n, m in models.all().items()}, data.hash, config, items)


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.perturbation.plots import plot_perturbation

    return {"perturbation": plot_perturbation(r)}


SPEC = AnalysisSpec(
    "perturbation", "Activation perturbation probe", PerturbationConfig, compute_perturbation,
    lambda r: {"perturbation_summary": r.to_frame(), "perturbation_samples": r.samples_frame()},
    lambda r, name: r.scores(name),
    evidence=(EVIDENCE,),
    evidence_items=lambda r: r.evidence_items(),
    resolve=resolve_perturbation,
    page_title="Perturbation",
    icon=":material/grain:",
    plots=_plots,
    cost_rank=7,
    scope=Scope("whether small activation noise makes answers resurface",
                "much on its own: noise moves probabilities at random; read it against the control"),
)
