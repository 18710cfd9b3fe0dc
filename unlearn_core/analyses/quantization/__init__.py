"""Quantization probe (methods.md section 5, after "Catastrophic Failure of LLM Unlearning via Quantization").

Utility-constrained unlearning often moves weights by less than one quantization step: the update vanishes when
the model is rounded to 4 bits and the "forgotten" answers come back. We round a deep copy of every unlearned
checkpoint (and of the retain-only reference, the floor a true deletion reaches, and of the original, to show
what rounding alone costs) with symmetric round-to-nearest per output channel (optionally per group of input
weights), re-score forget and retain sets, and report the normalised recovery rate. bitsandbytes NF4/int8
loading is added only where bitsandbytes imports and CUDA is present; otherwise the result says why it was skipped.

Weights-only companion: the share of weights whose 4-bit bucket differs between original and unlearned, per
module. Both are bucketed with the ORIGINAL's scales, so "same bucket" means "rounds to the same value": a small
share predicts that quantization undoes the unlearning.

Verdict evidence "quantization_recovery": per item, the answer p~ plain and under the headline attack (the lowest
RTN bit width) for every model, on the forget split and on the holdout split (facts the original never learned:
what rounding alone does to unknown answers), so the recovery is calibrated against the retain-only reference or,
without one, against the checkpoint's own holdout.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from unlearn_core.analyses.common.probes import (
    PLAIN,
    SUMMARY_COLUMNS,
    ItemTable,
    check_int,
    mean,
    probe_items,
    probe_scores,
    put,
    split_scores,
    summary_row,
)
from unlearn_core.analyses.spec import AnalysisSpec, Evidence, Scope
from unlearn_core.evidence.recovery import recovery_rate  # noqa: F401 - re-exported, see below
from unlearn_core.model import arch
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress

# check_int and recovery_rate are re-exported: representation.py and extraction.py import them from here (new code
# takes them from analyses.probe_helpers)

# ------------------------------------------------------------------------------------------------ quantization


def quantizable_modules(model, include_head: bool = True) -> dict[str, nn.Module]:
    """Every nn.Linear / transformers Conv1D (GPT-2) by name; embeddings and norms are left in full precision."""
    head = model.get_output_embeddings()
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D":
            if mod is head and not include_head:
                continue
            out[name] = mod
    return out


def rows_view(mod: nn.Module) -> torch.Tensor:
    """Weight as [out, in] (one row per output channel). Conv1D stores [in, out]."""
    return mod.weight.T if type(mod).__name__ == "Conv1D" else mod.weight


def rtn_scales(w: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """Symmetric per-row (per-group) step sizes for w [out, in]: max|w| / (2^(bits-1) - 1), shape [out, n_groups]."""
    qmax = 2 ** (bits - 1) - 1
    g = _groups(w, group_size)  # [out, n_groups, gs]
    return (g.abs().amax(-1) / qmax).clamp_min(1e-12)


def _groups(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    out, inp = w.shape
    gs = inp if not group_size or group_size >= inp else group_size
    if inp % gs:
        raise ValueError(f"group_size {gs} does not divide the input dimension {inp}")
    return w.float().reshape(out, inp // gs, gs)


def rtn_buckets(w: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """Integer bucket of every weight [out, n_groups, gs] under the given scales."""
    qmax = 2 ** (bits - 1) - 1
    return torch.round(_groups(w, group_size) / scales[..., None]).clamp(-qmax, qmax)


def rtn_quantize(w: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """Round-to-nearest symmetric quantize-dequantize of w [out, in] (same shape and dtype back)."""
    scales = rtn_scales(w, bits, group_size)
    q = rtn_buckets(w, scales, bits, group_size) * scales[..., None]
    return q.reshape(w.shape).to(w.dtype)


@torch.no_grad()
def quantized_copy(model, bits: int, group_size: int | None = None, include_head: bool = True):
    """A deep copy of `model` with every Linear/Conv1D weight rounded; the input model is not touched."""
    q = copy.deepcopy(model)
    for mod in quantizable_modules(q, include_head).values():
        w = rows_view(mod)
        w.copy_(rtn_quantize(w, bits, group_size))
    return q.eval()


def bnb_available() -> tuple[bool, str]:
    """(usable, reason). bitsandbytes has no CPU path here: it needs the package and a CUDA device."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return False, f"bitsandbytes not importable ({type(exc).__name__})"
    if not torch.cuda.is_available():
        return False, "bitsandbytes needs CUDA; no CUDA device"
    return True, "ok"


def bnb_load(lm: LoadedModel, mode: str):
    """Reload a checkpoint from disk through bitsandbytes ('nf4' or 'int8'). Only called when bnb_available()."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    qc = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
          if mode == "nf4" else BitsAndBytesConfig(load_in_8bit=True))
    return AutoModelForCausalLM.from_pretrained(lm.path, quantization_config=qc, device_map={"": 0}).eval()


@torch.no_grad()
def bucket_changes(original, unlearned, bits: int = 4, group_size: int | None = None,
                   include_head: bool = True) -> list[dict]:
    """Per module: share of weights changed at all, and share whose `bits`-bit bucket changed.

    Both models are bucketed with the ORIGINAL's per-row scales so buckets are comparable (with its own scales
    an unlearned model could change buckets only because its row maximum moved).
    """
    mods_o = quantizable_modules(original, include_head)
    mods_u = quantizable_modules(unlearned, include_head)
    blocks = {id(b): i for i, b in enumerate(arch.decoder_layers(original))}
    block_of = {}
    for name, mod in original.named_modules():
        if id(mod) in blocks:
            block_of[name] = blocks[id(mod)]
    rows = []
    for name, mo in mods_o.items():
        mu = mods_u.get(name)
        if mu is None or mu.weight.shape != mo.weight.shape:
            continue
        wo, wu = rows_view(mo).float(), rows_view(mu).float().to(mo.weight.device)
        scales = rtn_scales(wo, bits, group_size)
        changed = (wo != wu).float().mean()
        bucket = (rtn_buckets(wo, scales, bits, group_size) != rtn_buckets(wu, scales, bits, group_size)).float()
        step = scales.mean()
        rel = ((wu - wo).abs().reshape(bucket.shape) / scales[..., None]).mean()
        layer = next((i for prefix, i in block_of.items() if name.startswith(prefix + ".")), -1)
        rows.append({"module": name, "layer": layer, "n_weights": int(wo.numel()), "changed_share": float(changed),
                     "bucket_changed_share": float(bucket.mean()), "mean_abs_delta_in_steps": float(rel),
                     "mean_step": float(step)})
    return rows


# ---------------------------------------------------------------------------------------------------- analysis


@register_result
@dataclass(frozen=True)
class QuantizationConfig:
    """bits: RTN bit widths to try; group_size: weights per scale along the input dim (None = whole row, i.e.
    per-channel); include_head: also round the output head; bnb: also try bitsandbytes NF4/int8 where possible;
    bucket_bits: bit width of the weights-only bucket comparison."""

    bits: tuple[int, ...] = (8, 4)
    group_size: int | None = None
    include_head: bool = True
    include_original: bool = True
    bnb: bool = True
    bucket_bits: int = 4
    batch_size: int = 32

    def __post_init__(self):
        if not isinstance(self.bits, tuple) or not self.bits:
            raise ValueError(f"bits must be a non-empty tuple, got {self.bits!r}")
        for b in self.bits:
            check_int("bits", b, 2)
            if b > 16:
                raise ValueError(f"bits must be <= 16, got {b}")
        if self.group_size is not None:
            check_int("group_size", self.group_size)
        check_int("bucket_bits", self.bucket_bits, 2)
        check_int("batch_size", self.batch_size)
        for name in ("include_head", "include_original", "bnb"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool")


@register_result
@dataclass(frozen=True)
class QuantizationResult:
    summary: tuple[dict, ...]  # SUMMARY_COLUMNS rows: one per (checkpoint, attack); attack "plain" = unquantized
    buckets: tuple[dict, ...]  # per (checkpoint, module) bucket-change shares vs the original
    notes: tuple[str, ...]  # e.g. why bitsandbytes was skipped
    model_hashes: dict[str, str]
    data_hash: str
    config: QuantizationConfig
    items: ItemTable = field(default_factory=dict)  # per-item p~: split (forget/holdout) -> model -> attack -> [n]

    @property
    def headline(self) -> str:
        """The evidence's attack: the lowest RTN bit width tried (the strongest rounding)."""
        return f"{min(self.config.bits)}bit"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.summary), columns=list(SUMMARY_COLUMNS))

    def buckets_frame(self) -> pd.DataFrame:
        cols = ["model", "module", "layer", "n_weights", "changed_share", "bucket_changed_share",
                "mean_abs_delta_in_steps", "mean_step"]
        return pd.DataFrame(list(self.buckets), columns=cols)

    def scores(self, model_name: str) -> dict[str, float]:
        out = probe_scores(self.summary, model_name, "quantization")
        rows = [r for r in self.buckets if r["model"] == model_name]
        if rows:
            n = sum(r["n_weights"] for r in rows)
            out[f"bucket_changed_share_{self.config.bucket_bits}bit"] = \
                sum(r["bucket_changed_share"] * r["n_weights"] for r in rows) / n
            out["weight_changed_share"] = sum(r["changed_share"] * r["n_weights"] for r in rows) / n
        return out

    def evidence_items(self) -> dict:
        bits = min(self.config.bits)
        return {EVIDENCE.key: probe_items(self.items, EVIDENCE.key, self.headline, f"{bits}-bit RTN")}


EVIDENCE = Evidence("quantization_recovery", "Quantization recovery (lowest-bit RTN)", "reference+holdout",
                    axis="recoverable", counted=False, level="forget answer p after rounding the weights",
                    why_not="recovers no more from the planted suppressions than from the deletion controls on "
                    "the demo lab (probe-validity table): its number is shown, not counted")


def _attack_names(cfg: QuantizationConfig, use_bnb: bool) -> list[str]:
    names = [f"{b}bit" for b in cfg.bits]
    return names + (["bnb_nf4", "bnb_int8"] if use_bnb else [])


def compute_quantization(models: ModelSet, data: AuditData, config: QuantizationConfig = QuantizationConfig(),
                         progress: Progress | None = None) -> QuantizationResult:
    if not isinstance(config, QuantizationConfig):
        raise TypeError(f"config must be a QuantizationConfig, got {type(config).__name__}")
    notes = []
    use_bnb = False
    if config.bnb:
        use_bnb, why = bnb_available()
        if not use_bnb:
            notes.append(f"bitsandbytes NF4/int8 skipped: {why}")
    targets = [models.original] if config.include_original else []
    targets += list(models.unlearned.values()) + ([models.retain_only] if models.retain_only else [])
    attacks = _attack_names(config, use_bnb)
    total, done = len(targets) * (1 + len(attacks)) + 1, 0
    items: ItemTable = {}

    def step(msg: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done / total, msg)
        done += 1

    def scored(lm: LoadedModel, model, attack: str) -> tuple[tuple[float, float], tuple[float, float]]:
        """Means for the summary; per-item forget and holdout p~ into the item table."""
        fp, fa = split_scores(model, lm.tokenizer, data.forget, data.prompt_format, config.batch_size)
        rp, ra = split_scores(model, lm.tokenizer, data.retain, data.prompt_format, config.batch_size)
        put(items, "forget", lm.name, attack, fp)
        if data.holdout:
            hp, _ = split_scores(model, lm.tokenizer, data.holdout, data.prompt_format, config.batch_size)
            put(items, "holdout", lm.name, attack, hp)
        return (mean(fp), mean(fa)), (mean(rp), mean(ra))

    step("original: plain scores")
    f0, r0 = scored(models.original, models.original.model, PLAIN)
    orig_plain = summary_row(models.original.name, "original", PLAIN, f0, r0, None, None)
    rows, buckets = [], []
    for lm in targets:
        if lm is models.original:
            plain = orig_plain
        else:
            step(f"{lm.name}: plain scores")
            f, r = scored(lm, lm.model, PLAIN)
            plain = summary_row(lm.name, lm.role, PLAIN, f, r, None, None)
            buckets += [{"model": lm.name, **b} for b in bucket_changes(
                models.original.model, lm.model, config.bucket_bits, config.group_size, config.include_head)]
        rows.append(plain)
        for attack in attacks:
            step(f"{lm.name}: {attack}")
            if attack.startswith("bnb_"):
                try:
                    qm = bnb_load(lm, attack.removeprefix("bnb_"))
                except Exception as exc:  # noqa: BLE001 - report and go on: the RTN numbers still stand
                    notes.append(f"{lm.name}: bitsandbytes {attack} failed: {type(exc).__name__}: {exc}")
                    continue
            else:
                qm = quantized_copy(lm.model, int(attack.removesuffix("bit")), config.group_size,
                                    config.include_head)
            f, r = scored(lm, qm, attack)
            del qm
            rows.append(summary_row(lm.name, lm.role, attack, f, r, plain, orig_plain))
    if not config.include_original:
        rows.insert(0, orig_plain)
    if not data.holdout:
        notes.append("no holdout split: the evidence can only be calibrated against a retain-only reference")
    if progress is not None:
        progress(1.0, "quantization done")
    return QuantizationResult(tuple(rows), tuple(buckets), tuple(notes),
                              {n: m.hash for n, m in models.all().items()}, data.hash, config, items)


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.quantization.plots import plot_bucket_changes, plot_quantization

    return {"quantization": plot_quantization(r, "forget_acc"), "quantization_buckets": plot_bucket_changes(r)}


SPEC = AnalysisSpec(
    "quantization", "Quantization probe", QuantizationConfig, compute_quantization,
    lambda r: {"quantization_summary": r.to_frame(), "quantization_buckets": r.buckets_frame()},
    lambda r, name: r.scores(name),
    evidence=(EVIDENCE,),
    evidence_items=lambda r: r.evidence_items(),
    page_title="Quantization",
    icon=":material/compress:",
    plots=_plots,
    cost_rank=4,
    scope=Scope("whether tiny weight updates that hid the answers vanish under 4/8-bit rounding",
                "suppression that survives rounding"),
)
