"""Representation similarity and logit lens (methods.md section 5, after "Are We Truly Forgetting?").

If unlearning only suppresses an answer near the output, the hidden states that encode the forgotten facts are
unchanged: linear CKA between original and unlearned block outputs stays near 1 on forget prompts (as on retain
prompts), and a logit lens still finds the gold answer at intermediate layers. Deletion changes the forget-prompt
representations more than the retain-prompt ones (CKA_forget / CKA_retain < 1).

Features: the output of every decoder block (read by forward hooks, BEFORE the final norm) at every PROMPT token
(pooling "tokens", padding excluded; answer tokens are not fed), or mean-pooled / last-token per prompt. Token
rows are capped at `max_rows` (evenly spaced) to bound memory: rows x d_model x n_layers floats per model.
Logit lens: block output at the last prompt token -> final norm -> unembedding (the model's own, or with
lens_head="original" the original's, which reads an unlearned model's states past a changed head); rank and
probability of the FIRST gold answer token at every layer (the last layer's lens equals the model's own logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F

from unlearn_core.analyses.common.probes import check_int, recovery_rate
from unlearn_core.analyses.spec import AnalysisSpec, Scope
from unlearn_core.model import arch
from unlearn_core.model.hooks import capture_block_outputs
from unlearn_core.model.scoring import encode, input_device, length_batches, pad_id_of, right_pad
from unlearn_core.store.codec import register_result
from unlearn_core.types import AuditData, LoadedModel, ModelSet, Progress

POOLINGS = ("tokens", "mean", "last")
SPLITS = ("forget", "retain")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of x [n, d1] and y [n, d2] (rows = the same n inputs): ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)
    on column-centred features, in float64. Invariant to orthogonal maps and isotropic scaling of either side."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same rows on both sides, got {x.shape[0]} and {y.shape[0]}")
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    if x.shape[0] < x.shape[1] + y.shape[1]:  # Gram form is cheaper when n is small: <XX^T, YY^T> = ||Y^T X||^2
        kx, ky = x @ x.T, y @ y.T  # [n, n]
        num, den = (kx * ky).sum(), kx.norm() * ky.norm()
    else:
        num, den = (y.T @ x).square().sum(), (x.T @ x).norm() * (y.T @ y).norm()
    if den <= 0:
        return math.nan
    return float(num / den)


@torch.no_grad()
def block_features(lm: LoadedModel, prompts: list[str], pooling: str, max_rows: int | None, batch_size: int,
                   gold_first: list[int] | None = None, lens_model=None):
    """(features per layer [rows, d] float32 CPU, lens per layer [n_prompts, 2] (prob, rank) or None, token ids).

    One forward pass per length batch with hooks on every block; the lens is computed from the same pass.
    """
    model, tok = lm.model, lm.tokenizer
    device = input_device(model)
    ids_list = tok(list(prompts), add_special_tokens=True)["input_ids"]
    layers = arch.decoder_layers(model)
    lens_model = model if lens_model is None else lens_model
    norm, head = arch.final_norm(lens_model), lens_model.get_output_embeddings()
    n, L = len(prompts), len(layers)
    feats: list[list] = [[None] * n for _ in range(L)]
    lens = torch.zeros(L, n, 2) if gold_first is not None else None
    # one forward per length batch; every block output captured by the kernel
    for batch in length_batches([len(s) for s in ids_list], batch_size):
        ids, mask = right_pad([ids_list[i] for i in batch], pad_id_of(tok), device)
        captured = capture_block_outputs(model, ids, mask)  # {layer: [B, T, d]}
        for li in range(L):
            h = captured[li]
            for r, i in enumerate(batch):
                t = len(ids_list[i])
                hs = h[r, :t].float()  # [t, d]
                feats[li][i] = {"tokens": hs, "mean": hs.mean(0, keepdim=True), "last": hs[-1:]}[pooling].cpu()
            if lens is not None:
                last = torch.stack([h[r, len(ids_list[i]) - 1] for r, i in enumerate(batch)])  # [B, d]
                z = head(norm(last) if norm is not None else last).float()  # [B, V]
                gold = torch.tensor([gold_first[i] for i in batch], device=z.device)
                zg = z.gather(1, gold[:, None])  # [B, 1]
                lens[li, batch, 0] = F.softmax(z, -1).gather(1, gold[:, None])[:, 0].cpu()
                lens[li, batch, 1] = (z > zg).sum(1).float().cpu()  # 0 = top-1
    out = [torch.cat(f) for f in feats]
    if max_rows is not None and out and out[0].shape[0] > max_rows:
        keep = torch.linspace(0, out[0].shape[0] - 1, max_rows).round().long()
        out = [f[keep] for f in out]
    return out, lens, [tuple(s) for s in ids_list]


@register_result
@dataclass(frozen=True)
class RepresentationConfig:
    """pooling: CKA rows are prompt tokens ("tokens"), per-prompt means ("mean") or last prompt tokens ("last");
    max_rows caps token rows per split; logit_lens toggles the lens; lens_head "own" reads each model's hidden states
    through its own final norm + unembedding, "original" through the ORIGINAL's (sees past a changed output head)."""

    pooling: str = "tokens"
    max_rows: int | None = 4096
    logit_lens: bool = True
    lens_head: str = "own"
    batch_size: int = 32

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.max_rows is not None:
            check_int("max_rows", self.max_rows, 2)
        check_int("batch_size", self.batch_size)
        if self.lens_head not in ("own", "original"):
            raise ValueError(f"lens_head must be 'own' or 'original', got {self.lens_head!r}")
        if not isinstance(self.logit_lens, bool):
            raise TypeError("logit_lens must be a bool")


@register_result
@dataclass(frozen=True)
class RepresentationResult:
    cka: tuple[dict, ...]  # (model, role, split, layer, cka) vs the original
    lens: tuple[dict, ...]  # (model, role, split, layer, mean_prob, median_rank, top1_share)
    model_hashes: dict[str, str]
    data_hash: str
    config: RepresentationConfig

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.cka), columns=["model", "role", "split", "layer", "cka"])

    def lens_frame(self) -> pd.DataFrame:
        cols = ["model", "role", "split", "layer", "mean_prob", "median_rank", "top1_share"]
        return pd.DataFrame(list(self.lens), columns=cols)

    def scores(self, model_name: str) -> dict[str, float]:
        """CKA summaries and `logit_lens_recovery`: how much of the final-layer top-1 loss an intermediate layer's
        lens undoes (max over layers of top-1 share, normalised like every recovery rate)."""
        out: dict[str, float] = {}
        df = self.to_frame()
        d = df[df.model == model_name]
        if d.empty:
            return out
        for split in SPLITS:
            s = d[d.split == split].cka
            if len(s):
                out[f"cka_{split}_mean"], out[f"cka_{split}_min"] = float(s.mean()), float(s.min())
        if "cka_forget_mean" in out and out.get("cka_retain_mean"):
            out["cka_forget_retain_ratio"] = out["cka_forget_mean"] / out["cka_retain_mean"]
        lens = self.lens_frame()
        lf = lens[lens.split == "forget"]
        mine, orig = lf[lf.model == model_name], lf[lf.role == "original"]
        if len(mine) and len(orig):
            final = int(mine.layer.max())
            unl_final = float(mine[mine.layer == final].top1_share.iloc[0])
            orig_final = float(orig[orig.layer == final].top1_share.iloc[0])
            out["logit_lens_recovery"] = recovery_rate(float(mine.top1_share.max()), unl_final, orig_final)
            out["logit_lens_max_prob_forget"] = float(mine.mean_prob.max())
        return out


def compute_representation(models: ModelSet, data: AuditData, config: RepresentationConfig = RepresentationConfig(),
                           progress: Progress | None = None) -> RepresentationResult:
    if not isinstance(config, RepresentationConfig):
        raise TypeError(f"config must be a RepresentationConfig, got {type(config).__name__}")
    fmt = data.prompt_format
    checkpoints = list(models.all().values())
    total = len(checkpoints) * len(SPLITS)
    cka_rows, lens_rows = [], []
    for si, split in enumerate(SPLITS):
        items = [it for it in getattr(data, split) if not it.is_passage]
        if not items:
            continue
        prompts = [fmt.pair(it)[0] for it in items]
        ref_feats, ref_ids = None, None
        for mi, lm in enumerate(checkpoints):  # original first (ModelSet.all order)
            if progress is not None:
                progress((si * len(checkpoints) + mi) / total, f"{lm.name}: {split} hidden states")
            gold = None
            if config.logit_lens:
                enc = encode(lm.tokenizer, prompts, [fmt.pair(it)[1] for it in items])
                gold = [e.answer_ids[0] if e.answer_ids else pad_id_of(lm.tokenizer) for e in enc]
            feats, lens, ids = block_features(lm, prompts, config.pooling, config.max_rows, config.batch_size, gold,
                                             models.original.model if config.lens_head == "original" else None)
            if ref_feats is None:
                ref_feats, ref_ids = feats, ids
            elif ids != ref_ids:
                raise ValueError(f"{lm.name} tokenises the prompts differently from the original: CKA needs the "
                                 "same tokens on both sides")
            if lm.role != "original":
                if len(feats) != len(ref_feats):
                    raise ValueError(f"{lm.name} has {len(feats)} blocks, the original {len(ref_feats)}")
                for layer, (x, y) in enumerate(zip(ref_feats, feats)):
                    cka_rows.append({"model": lm.name, "role": lm.role, "split": split, "layer": layer,
                                     "cka": linear_cka(x, y)})
            if lens is not None:
                for layer in range(lens.shape[0]):
                    p, rank = lens[layer, :, 0], lens[layer, :, 1]
                    lens_rows.append({"model": lm.name, "role": lm.role, "split": split, "layer": layer,
                                      "mean_prob": float(p.mean()), "median_rank": float(rank.median()),
                                      "top1_share": float((rank == 0).float().mean())})
    if progress is not None:
        progress(1.0, "representation done")
    return RepresentationResult(tuple(cka_rows), tuple(lens_rows), {n: m.hash for n, m in models.all().items()},
                                data.hash, config)


def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.representation.plots import plot_cka, plot_logit_lens

    out = {"representation_cka": plot_cka(r)}
    if r.config.logit_lens:
        out["representation_logit_lens"] = plot_logit_lens(r, "forget", "top1_share")
    return out


SPEC = AnalysisSpec(
    name="representation", title="Representation similarity (CKA) and logit lens",
    default_config=RepresentationConfig, compute=compute_representation,
    tables=lambda r: {"representation_cka": r.to_frame(), "representation_logit_lens": r.lens_frame()},
    scores=lambda r, name: r.scores(name),
    page_title="Representations",
    icon=":material/layers:",
    plots=_plots,
    cost_rank=2,
    scope=Scope("how far each layer's states moved from the original's, and where the answer is "
                "readable by the logit lens", "recovery: similarity is not stored knowledge",
                "hidden states (compared by CKA)"),
)
