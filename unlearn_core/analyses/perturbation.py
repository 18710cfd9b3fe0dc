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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch

from unlearn_core import arch
from unlearn_core.analyses.quantization import SUMMARY_COLUMNS, check_int, mean, probe_scores, summary_row
from unlearn_core.codec import register_result
from unlearn_core.scoring import encode, model_device, pad_id_of, score_encoded
from unlearn_core.types import AuditData, LoadedModel, ModelSet

Progress = Callable[[float, str], None]


@contextmanager
def activation_noise(model, layers: tuple[int, ...], sigma: float, seed: int):
    """Within the block, add sigma * ||h|| * u to the outputs of `layers` (hooks; the model itself is untouched)."""
    gen = torch.Generator(device=model_device(model)).manual_seed(seed)

    def fn(_mod, _inp, out):
        h = out[0] if isinstance(out, tuple) else out  # [B, T, d]
        u = torch.randn(h.shape, generator=gen, device=h.device, dtype=torch.float32)
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        hf = h.float()
        noisy = (hf + sigma * hf.norm(dim=-1, keepdim=True) * u).to(h.dtype)
        return (noisy, *out[1:]) if isinstance(out, tuple) else noisy

    blocks = arch.decoder_layers(model)
    handles = [blocks[i].register_forward_hook(fn) for i in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@register_result
@dataclass(frozen=True)
class PerturbationConfig:
    """layers: blocks to perturb (None = the middle block); sigmas: noise scales relative to ||h||; k: samples per
    forget question."""

    layers: tuple[int, ...] | None = None
    sigmas: tuple[float, ...] = (0.1, 0.3, 1.0)
    k: int = 8
    seed: int = 0
    batch_size: int = 64

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

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.summary), columns=list(SUMMARY_COLUMNS))

    def samples_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.samples), columns=["model", "role", "sigma", "sample_acc", "sample_p"])

    def scores(self, model_name: str) -> dict[str, float]:
        return probe_scores(self.summary, model_name, "perturbation")


def compute_perturbation(models: ModelSet, data: AuditData, config: PerturbationConfig = PerturbationConfig(),
                         progress: Progress | None = None) -> PerturbationResult:
    if not isinstance(config, PerturbationConfig):
        raise TypeError(f"config must be a PerturbationConfig, got {type(config).__name__}")
    layers = _layers(config, models.original.model)
    fmt = data.prompt_format
    checkpoints = list(models.all().values())  # original first
    total = len(checkpoints) * (1 + len(config.sigmas))
    rows, samples, orig_plain = [], [], None
    for mi, lm in enumerate(checkpoints):
        def tell(j: int, msg: str, mi=mi, name=lm.name) -> None:
            if progress is not None:
                progress((mi * (1 + len(config.sigmas)) + j) / total, f"{name}: {msg}")

        pairs_f = [fmt.pair(it) for it in data.forget]
        pairs_r = [fmt.pair(it) for it in data.retain]
        enc_f = encode(lm.tokenizer, [p for p, _ in pairs_f], [a for _, a in pairs_f])
        enc_r = encode(lm.tokenizer, [p for p, _ in pairs_r], [a for _, a in pairs_r]) if pairs_r else []
        tell(0, "plain scores")
        pad = pad_id_of(lm.tokenizer)
        f = score_encoded(lm.model, enc_f, pad, batch_size=config.batch_size)
        r = score_encoded(lm.model, enc_r, pad, batch_size=config.batch_size) if enc_r else None
        retain_plain = (mean(r.prob()), mean(r.accuracy())) if r else (math.nan, math.nan)
        plain = summary_row(lm.name, lm.role, "plain", (mean(f.prob()), mean(f.accuracy())), retain_plain, None, None)
        orig_plain = plain if lm.role == "original" else orig_plain
        rows.append(plain)
        for si, sigma in enumerate(config.sigmas):
            tell(1 + si, f"sigma={sigma:g}, {config.k} samples")
            seed = config.seed * 1000 + si
            p, a = noisy_scores(lm, enc_f, config.k, layers, sigma, seed, config.batch_size)  # [n, k]
            if enc_r:
                rp, ra = noisy_scores(lm, enc_r, 1, layers, sigma, seed + 500, config.batch_size)
                retain = (mean(rp), mean(ra))
            else:
                retain = (math.nan, math.nan)
            best = (mean(p.max(1).values), mean(a.max(1).values))
            rows.append(summary_row(lm.name, lm.role, f"sigma{sigma:g}", best, retain, plain, orig_plain))
            samples.append({"model": lm.name, "role": lm.role, "sigma": float(sigma), "sample_acc": mean(a),
                            "sample_p": mean(p)})
    if progress is not None:
        progress(1.0, "perturbation done")
    return PerturbationResult(tuple(rows), tuple(samples), tuple(layers),
                              {n: m.hash for n, m in models.all().items()}, data.hash, config)


def analysis_spec():
    from unlearn_core.audit import Analysis

    return Analysis("perturbation", "Activation perturbation probe", PerturbationConfig, compute_perturbation,
                    lambda r: {"perturbation_summary": r.to_frame(), "perturbation_samples": r.samples_frame()},
                    lambda r, name: r.scores(name))
